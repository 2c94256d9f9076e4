"""Hydra launcher plugins of convnet-classics (Hydra finds launchers only in the ``hydra_plugins`` namespace)."""
