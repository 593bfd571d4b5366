"""Data: the dataset registry, checksummed fetching (mirror or web), IDX files, natural images.

Importing this package registers the built-in datasets (:mod:`saliency_sanity.data.registry`, and the
shortcut datasets of :mod:`saliency_sanity.data.decoy`).
"""

from saliency_sanity.data.download import (
    MIRROR_CONFIG_KEY,
    MIRROR_ENV,
    ChecksumError,
    DataError,
    DownloadError,
    MirrorError,
    file_hash,
    hash_matches,
    md5sum,
)
from saliency_sanity.data.idx import IdxFormatError, parse_idx, read_idx, write_idx
from saliency_sanity.data import decoy  # noqa: F401  (registers the derived shortcut datasets)
from saliency_sanity.data.registry import (
    DATASETS,
    DatasetSpec,
    DataSource,
    Examples,
    dataset_spec,
    downloads_of,
    fetch_dataset,
    load_examples,
    load_split,
    permute_labels,
    raw_dir,
    register_dataset,
    train_validation_split,
)

__all__ = [
    "DATASETS", "MIRROR_CONFIG_KEY", "MIRROR_ENV", "ChecksumError", "DataError", "DataSource", "DatasetSpec",
    "DownloadError", "Examples", "IdxFormatError", "MirrorError", "dataset_spec", "downloads_of", "fetch_dataset",
    "file_hash", "hash_matches", "load_examples", "load_split", "md5sum", "parse_idx", "permute_labels",
    "raw_dir", "read_idx", "register_dataset", "train_validation_split", "write_idx",
]
