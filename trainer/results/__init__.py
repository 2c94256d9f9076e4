"""What runs measured, against the papers: the papers' figures and the comparison (``papers.yaml``,
``paper_comparison.py``), the closing summary (``summary.py``), W&B's set-up and reading its files back
(``tracking.py``) and the report over many runs (``report/``). It imports nothing of ``trainer`` but itself.
"""
