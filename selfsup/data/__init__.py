"""Datasets as uint8 image tensors and a deterministic, resumable batch loader."""

from selfsup.data.datasets import (
    DATASETS,
    DEBIAN_DATA_DIRS,
    IMAGE_EXTENSIONS,
    DatasetNotFoundError,
    FileImageDataset,
    ImageDataset,
    TensorImageDataset,
    UnreadableImageError,
    UnreadableImageWarning,
    cache_dir,
    convert_channels,
    decode_image,
    load_dataset,
    resize_images,
)
from selfsup.data.idx import IdxFormatError, read_idx, write_idx
from selfsup.data.loader import EpochLoader, full_batches

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
    "load_dataset",
    "read_idx",
    "resize_images",
    "write_idx",
]
