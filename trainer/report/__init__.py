"""``python -m trainer.report``: W&B runs as a table and a plot beside the papers' figures (see __main__)."""
