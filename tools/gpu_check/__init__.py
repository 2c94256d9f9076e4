"""The GPU check: every measurement and test that needs a GPU, built for a GPU machine without
network, used for a few minutes at a time.

``kit.py`` (run here: ``make gpu-kit``) packs the wheels such a machine lacks into parts that fit the commands
that carry them; ``install.py`` unpacks them there; ``steps.py`` holds the stages' steps and ``report.py``
writes their figures as they come; ``__main__.py`` runs a stage; ``rehearsal.py`` tries it all here first.
It may import the run loop and the benchmark (``trainer.bench``); nothing else imports it. Run from the checkout
(it writes ``gpu-kit/`` and ``gpu-check/`` there, and packs the files ``git ls-files`` names); the kit is built
with Python 3.11 or newer (``tomllib``) and ``packaging`` (the ``test`` extra); its installer needs only the
standard library (tests/tools/test_gpu_check.py holds it).
"""
