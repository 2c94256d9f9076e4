"""What runs measured, against the papers: the papers' figures and the comparison (``papers.yaml``,
``paper_comparison.py``), the closing summary (``summary.py``), W&B's set-up and reading its files back
(``tracking/``). It imports nothing of ``trainer`` but itself (``trainer/report/``, the command, reads runs
with it).
"""
