"""Data: the ImageNet folder layout, the embedded digits sample and the Lightning DataModules."""

from .datamodule import DigitsDataModule, ImageFolderDataModule
from .digits import write_digits
from .layout import DataConfigError, DataLayoutError, check_layout

__all__ = ["DigitsDataModule", "ImageFolderDataModule", "write_digits", "DataConfigError", "DataLayoutError",
           "check_layout"]
