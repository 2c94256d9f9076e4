"""Data: the ImageNet folder layout, the embedded digits sample, DALI pipelines and the Lightning DataModules."""

from .datamodule import DigitsDataModule, ImageFolderDataModule, data_parallel_rank_and_size
from .digits import write_digits
from .layout import DataConfigError, DataLayoutError, Listing, check_layout, list_dataset

__all__ = ["DigitsDataModule", "ImageFolderDataModule", "data_parallel_rank_and_size", "write_digits",
           "DataConfigError", "DataLayoutError", "Listing", "check_layout", "list_dataset"]
