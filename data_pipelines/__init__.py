"""Data: the ImageNet folder layout, the embedded digits sample, DALI pipelines and the Lightning DataModules.

The names below are imported on first use, so that the command-line tools that need neither
Lightning nor DALI (``prepare``, ``verify``) start in a fraction of a second.
"""

import importlib

_WHERE = {"DigitsDataModule": "datamodule", "ImageFolderDataModule": "datamodule",
          "data_parallel_rank_and_size": "sharding", "write_digits": "digits", "DataConfigError": "layout",
          "DataLayoutError": "layout", "Listing": "layout", "check_layout": "layout", "list_dataset": "layout"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
