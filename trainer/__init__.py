"""The Lightning and Hydra side: ``python -m trainer`` trains a model from the configs in ``conf/``."""
