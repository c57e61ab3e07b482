"""Datasets as uint8 image tensors and a deterministic, resumable batch loader."""

from selfsup.data.base import DatasetNotFoundError, ImageDataset
from selfsup.data.batches import iterate_batches
from selfsup.data.decode import UnreadableImageError, UnreadableImageWarning, decode_image
from selfsup.data.files import FileImageDataset
from selfsup.data.folders import IMAGE_EXTENSIONS
from selfsup.data.idx import IdxFormatError, read_idx, write_idx
from selfsup.data.loader import EpochLoader, full_batches
from selfsup.data.memory import TensorImageDataset, convert_channels, resize_images
from selfsup.data.named import DATASETS, DEBIAN_DATA_DIRS, cache_dir, load_dataset

__all__ = [
    "DATASETS",
    "DEBIAN_DATA_DIRS",
    "IMAGE_EXTENSIONS",
    "DatasetNotFoundError",
    "EpochLoader",
    "FileImageDataset",
    "IdxFormatError",
    "ImageDataset",
    "TensorImageDataset",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "cache_dir",
    "convert_channels",
    "decode_image",
    "full_batches",
    "iterate_batches",
    "load_dataset",
    "read_idx",
    "resize_images",
    "write_idx",
]
