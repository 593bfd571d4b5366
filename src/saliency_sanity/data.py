"""MNIST and Fashion-MNIST: fetching with checksums (download or local mirror), IDX parsing,
the paper's splits, and the label permutation of the data-randomization test.

Every file that lands in ``<data_dir>/<dataset>/raw/`` has passed its md5 check: it is written
to a temporary file in the same folder and moved into place only after the checksum matched,
so an interrupted or corrupt transfer never leaves a half-written file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

MIRROR_ENV = "SALIENCY_DATA_MIRROR"
MIRROR_CONFIG_KEY = "data_mirror"
CHUNK_BYTES = 1 << 20
BACKOFF_SECONDS = 2.0  # first retry waits this long, then doubles


class DataError(RuntimeError):
    """Base class of the data errors: something about a dataset file is wrong or missing."""


class ChecksumError(DataError):
    """A file's checksum (md5 or sha256) differs from the official one (corrupt, truncated or a different file)."""


class DownloadError(DataError):
    """No source could deliver a file."""


class MirrorError(DataError):
    """The mirror folder lacks a file it should hold."""


class IdxFormatError(DataError, ValueError):
    """A file is not a well-formed (gzip-compressed) IDX file."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its files with their official md5s, and base URLs tried in order."""

    files: dict[str, str]
    urls: tuple[str, ...]
    image_size: int = 28
    num_classes: int = 10


SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        urls=(
            "http://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a known dataset; an unknown name is an error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def raw_dir(name: str, data_dir: str | os.PathLike) -> Path:
    """Where a dataset's files live: ``<data_dir>/<name>/raw``."""
    return Path(data_dir) / name / "raw"


def file_hash(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file (``algorithm``: any hashlib name), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_hash(path, "md5")


def hash_matches(actual: str, expected: str) -> bool:
    """``expected`` is the full digest or a prefix of it (torchvision's file names carry the first
    8 hex digits of the sha256)."""
    return bool(expected) and actual.startswith(expected.lower())


# --------------------------------------------------------------------------- fetching


def fetch_dataset(
    name: str,
    data_dir: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    *,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Make sure ``<data_dir>/<name>/raw/`` holds the dataset's four files, md5-verified.

    A file already there with the right md5 is kept. Otherwise it is copied from ``mirror``
    (else the ``SALIENCY_DATA_MIRROR`` environment variable), laid out as
    ``<mirror>/<name>/raw/<file>``, or downloaded from the official host, then a fallback.
    Returns the raw folder.
    """
    spec = dataset_spec(name)
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    mirror = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV) or None
    target_dir = raw_dir(name, data_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for filename, md5 in spec.files.items():
        target = target_dir / filename
        if target.is_file() and md5sum(target) == md5:
            continue
        if mirror is not None:
            _copy_from_mirror(raw_dir(name, mirror) / filename, target, md5)
        else:
            _download(spec.urls, filename, target, md5, retries=retries, timeout=timeout)
    return target_dir


def _copy_from_mirror(source: Path, target: Path, md5: str) -> None:
    if not source.is_file():
        raise MirrorError(
            f"data mirror has no {source}; the mirror (argument, {MIRROR_ENV} or config key "
            f"'{MIRROR_CONFIG_KEY}') must be laid out as <mirror>/<dataset>/raw/<file>"
        )
    with open(source, "rb") as src:
        _write_verified(target, md5, lambda out: shutil.copyfileobj(src, out, CHUNK_BYTES), origin=str(source))


def _download(
    urls: tuple[str, ...], filename: str, target: Path, expected: str, *, retries: int, timeout: float,
    algorithm: str = "md5", hint: str | None = None,
) -> None:
    """Try every URL ``retries`` times with exponential backoff; the first verified copy wins.

    ``hint`` replaces the closing advice of the error raised when every attempt failed.
    """
    failures: list[str] = []
    for base in urls:
        url = base + filename
        for attempt in range(retries):
            if attempt:
                time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    size = response.headers.get("Content-Length")
                    with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=filename) as bar:
                        _write_verified(target, expected, lambda out: _stream(response, out, bar.update),
                                        origin=url, algorithm=algorithm)
                return
            except (urllib.error.URLError, http.client.HTTPException, OSError, ChecksumError) as err:
                failures.append(f"{url} (attempt {attempt + 1}/{retries}): {err}")
    raise DownloadError(
        f"could not download {filename}:\n  " + "\n  ".join(failures) + "\n" + (hint or (
            f"Without network access, point the {MIRROR_ENV} environment variable (or the config key "
            f"'{MIRROR_CONFIG_KEY}') at a folder holding <dataset>/raw/{filename}."
        ))
    )


def _stream(source: BinaryIO, out: BinaryIO, progress: Callable[[int], object]) -> None:
    for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
        out.write(chunk)
        progress(len(chunk))


def _write_verified(
    target: Path, expected: str, fill: Callable[[BinaryIO], None], *, origin: str, algorithm: str = "md5"
) -> None:
    """Write via ``fill`` into a temp file beside ``target``; move it into place only if its hash matches."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
        actual = file_hash(tmp, algorithm)
        if not hash_matches(actual, expected):
            raise ChecksumError(
                f"checksum mismatch for {target.name} from {origin}: expected {algorithm} {expected}, "
                f"got {actual} (corrupt or truncated file)"
            )
        tmp.chmod(0o644)  # mkstemp creates 0600; the data is public
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- IDX files

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse a gzip-compressed IDX file, checking its magic number and that its size matches the header."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as err:
        raise IdxFormatError(f"{path} is not a readable gzip file ({err}); delete it and fetch it again") from err
    return parse_idx(payload, source=str(path))


def parse_idx(payload: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0 or payload[2] not in _IDX_DTYPES:
        raise IdxFormatError(f"{source}: bad IDX magic number {payload[:4].hex() or '(empty)'}")
    dtype = _IDX_DTYPES[payload[2]]
    ndim = payload[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header_size:
        raise IdxFormatError(f"{source}: IDX header declares {ndim} dimensions but the file is too short for them")
    shape = struct.unpack(f">{ndim}I", payload[4:header_size])
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = len(payload) - header_size
    if actual != expected:
        raise IdxFormatError(f"{source}: IDX header shape {shape} needs {expected} data bytes, file has {actual}")
    return np.frombuffer(payload, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a gzip-compressed IDX file (the format of the MNIST distribution)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    native = np.asarray(array)
    code = codes.get(native.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {native.dtype}; use one of {sorted(str(d) for d in codes)}")
    big_endian = native.astype(_IDX_DTYPES[code], copy=False)
    header = bytes([0, 0, code, native.ndim]) + struct.pack(f">{native.ndim}I", *native.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + big_endian.tobytes())


# --------------------------------------------------------------------------- splits


def load_split(name: str, data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 (N, 1, 28, 28) in [0, 1] (the paper's inputs / 255) and int64 labels."""
    spec = dataset_spec(name)
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    image_path, label_path = (raw_dir(name, data_dir) / filename for filename in SPLIT_FILES[split])
    for path in (image_path, label_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; fetch the dataset first "
                f"(saliency_sanity.data.fetch_dataset({name!r}, {str(data_dir)!r}))"
            )
    images, labels = read_idx(image_path), read_idx(label_path)
    size = spec.image_size
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
        raise IdxFormatError(f"{image_path}: expected uint8 images of shape (N, {size}, {size}), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise IdxFormatError(f"{label_path}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}")
    if labels.size and labels.max() >= spec.num_classes:
        raise IdxFormatError(f"{label_path}: label {labels.max()} outside 0..{spec.num_classes - 1}")
    pixels = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return pixels, torch.from_numpy(labels.astype(np.int64))


def train_validation_split(
    images: torch.Tensor, labels: torch.Tensor, validation_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_images, train_labels, val_images, val_labels): the first ``validation_size`` are held out, as in the paper."""
    if not 0 <= validation_size < len(images):
        raise ValueError(
            f"validation_size must be in [0, {len(images)}) for {len(images)} training images, got {validation_size}"
        )
    return images[validation_size:], labels[validation_size:], images[:validation_size], labels[:validation_size]


def permute_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random permutation of ``labels`` (same class counts, image-label pairing destroyed)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return labels[order]
