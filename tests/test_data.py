"""Data layer: fetching (mirror, download, checksums, atomicity), IDX parsing, splits, permutation."""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_sanity import data
from saliency_sanity.data import download
from saliency_sanity.data.registry import register_idx_dataset
from saliency_sanity.data import (
    ChecksumError,
    DownloadError,
    IdxFormatError,
    MirrorError,
    fetch_dataset,
    load_split,
    parse_idx,
    permute_labels,
    read_idx,
    train_validation_split,
    write_idx,
)

N_TRAIN, N_TEST = 12, 6


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed uint8 IDX file, built byte by byte from the format's definition."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_files(rng: np.random.Generator) -> dict[str, bytes]:
    """The four files of a tiny MNIST-like dataset, gzip-compressed."""
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TRAIN, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TEST, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(N_TEST) % 10,
    }
    return {name: gzip.compress(idx_bytes(array), mtime=0) for name, array in arrays.items()}


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A mirror holding a tiny dataset named 'mnist', with the md5 table pointed at its files."""
    files = make_files(np.random.default_rng(0))
    mirror = tmp_path / "mirror"
    (mirror / "mnist" / "raw").mkdir(parents=True)
    for name, payload in files.items():
        (mirror / "mnist" / "raw" / name).write_bytes(payload)
    md5s = {name: hashlib.md5(payload).hexdigest() for name, payload in files.items()}
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    monkeypatch.setattr(download, "BACKOFF_SECONDS", 0.0)
    with data.DATASETS.isolated():
        register_idx_dataset("mnist", md5s, ("http://example.invalid/a/", "http://example.invalid/b/"))
        yield {"files": files, "md5s": md5s, "mirror": mirror, "data_dir": tmp_path / "data"}


def test_fetch_copies_and_verifies(tiny: dict) -> None:
    raw = fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    assert raw == tiny["data_dir"] / "mnist" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(tiny["files"])
    for name, payload in tiny["files"].items():
        assert (raw / name).read_bytes() == payload


def test_mirror_from_environment(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.MIRROR_ENV, str(tiny["mirror"]))
    raw = fetch_dataset("mnist", tiny["data_dir"])
    assert len(list(raw.iterdir())) == 4


def test_corrupt_mirror_file_names_file_and_both_md5s_and_leaves_nothing(tiny: dict) -> None:
    name = "train-images-idx3-ubyte.gz"
    corrupt = tiny["files"][name][:-10]  # truncated
    (tiny["mirror"] / "mnist" / "raw" / name).write_bytes(corrupt)
    with pytest.raises(ChecksumError) as err:
        fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    message = str(err.value)
    assert name in message
    assert tiny["md5s"][name] in message
    assert hashlib.md5(corrupt).hexdigest() in message
    raw = tiny["data_dir"] / "mnist" / "raw"
    assert not (raw / name).exists()
    assert not [p for p in raw.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_existing_file_with_wrong_md5_is_replaced(tiny: dict) -> None:
    raw = tiny["data_dir"] / "mnist" / "raw"
    raw.mkdir(parents=True)
    name = "t10k-labels-idx1-ubyte.gz"
    (raw / name).write_bytes(b"half a file")
    fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    assert (raw / name).read_bytes() == tiny["files"][name]


def test_missing_mirror_file_names_path(tiny: dict) -> None:
    missing = tiny["mirror"] / "mnist" / "raw" / "t10k-labels-idx1-ubyte.gz"
    missing.unlink()
    with pytest.raises(MirrorError, match=str(missing)):
        fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])


def test_no_network_no_mirror_names_the_setting(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def offline(url: str, timeout: float):
        tried.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as err:
        fetch_dataset("mnist", tiny["data_dir"], retries=2)
    assert data.MIRROR_ENV in str(err.value) and "data_mirror" in str(err.value)
    first = "train-images-idx3-ubyte.gz"
    assert tried == [f"http://example.invalid/{host}/{first}" for host in ("a", "a", "b", "b")]
    assert list((tiny["data_dir"] / "mnist" / "raw").iterdir()) == []


class FakeResponse:
    """Stands in for an HTTP response: a readable body with a Content-Length."""

    def __init__(self, payload: bytes):
        self._chunks = [payload, b""]
        self.headers = {"Content-Length": str(len(payload))}

    def read(self, size: int = -1) -> bytes:
        return self._chunks.pop(0)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_download_falls_back_after_corrupt_copy(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def serve(url: str, timeout: float) -> FakeResponse:
        name = url.rsplit("/", 1)[1]
        payload = tiny["files"][name]
        return FakeResponse(payload[:5] if "/a/" in url else payload)  # host a serves a truncated copy

    monkeypatch.setattr(download.urllib.request, "urlopen", serve)
    raw = fetch_dataset("mnist", tiny["data_dir"], retries=1)
    for name, payload in tiny["files"].items():
        assert (raw / name).read_bytes() == payload


def test_good_existing_file_is_not_copied_again(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}

    def no_copy(*args: object, **kwargs: object) -> None:
        raise AssertionError("a verified file was fetched again")

    monkeypatch.setattr(download, "copy_from_mirror", no_copy)
    fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


def test_unknown_dataset_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fashion-mnist.*mnist"):
        fetch_dataset("cifar", tmp_path)


def test_idx_parser_reads_hand_built_file(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_round_trip(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(30) - 7).reshape(5, 6).astype(dtype)
    write_idx(tmp_path / "a.gz", array)
    result = read_idx(tmp_path / "a.gz")
    assert result.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result, array)


def test_idx_bad_magic_and_size() -> None:
    good = idx_bytes(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="magic"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(IdxFormatError, match="magic"):
        parse_idx(good[:2] + b"\x07" + good[3:])  # unknown dtype code
    with pytest.raises(IdxFormatError, match="4 data bytes, file has 3"):
        parse_idx(good[:-1])


def test_read_idx_on_non_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(IdxFormatError, match="plain.gz"):
        read_idx(path)


def test_load_split_shape_dtype_range(tiny: dict) -> None:
    fetch_dataset("mnist", tiny["data_dir"], tiny["mirror"])
    images, labels = load_split("mnist", tiny["data_dir"], "train")
    assert images.shape == (N_TRAIN, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (N_TRAIN,) and labels.dtype == torch.int64
    raw = np.frombuffer(gzip.decompress(tiny["files"]["train-images-idx3-ubyte.gz"])[16:], dtype=np.uint8)
    np.testing.assert_allclose(images.flatten().numpy(), raw / 255.0, rtol=1e-6)
    assert 0.0 <= images.min() and images.max() <= 1.0
    test_images, test_labels = load_split("mnist", tiny["data_dir"], "test")
    assert test_images.shape == (N_TEST, 1, 28, 28)
    assert test_labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_load_split_errors(tiny: dict) -> None:
    with pytest.raises(FileNotFoundError, match="saliency-sanity download mnist"):
        load_split("mnist", tiny["data_dir"], "train")
    with pytest.raises(ValueError, match="split"):
        load_split("mnist", tiny["data_dir"], "validation")


def test_train_validation_split_holds_out_the_first_images() -> None:
    images, labels = torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10)
    train_x, train_y, val_x, val_y = train_validation_split(images, labels, 3)
    assert val_y.tolist() == [0, 1, 2] and train_y.tolist() == list(range(3, 10))
    assert train_x.flatten().tolist() == list(range(3, 10))
    with pytest.raises(ValueError, match="validation_size"):
        train_validation_split(images, labels, 10)


def test_permute_labels_is_a_seeded_permutation() -> None:
    labels = torch.arange(1000) % 10
    permuted = permute_labels(labels, seed=1)
    assert sorted(permuted.tolist()) == sorted(labels.tolist())
    assert torch.equal(permuted, permute_labels(labels, seed=1))
    assert not torch.equal(permuted, permute_labels(labels, seed=2))
    assert (permuted == labels).float().mean() < 0.3  # about 1/10 agree by chance


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_mirror(name: str, tmp_path: Path) -> None:
    mirror = next((p for p in (Path("/work/shared/data"), Path(__file__).parents[2] / "shared" / "data") if p.is_dir()), None)
    if mirror is None:
        pytest.skip("no shared data mirror on this machine")
    fetch_dataset(name, tmp_path, mirror)
    images, labels = load_split(name, tmp_path, "train")
    assert images.shape == (60000, 1, 28, 28)
    assert torch.bincount(labels).min() >= 5000
    assert load_split(name, tmp_path, "test")[0].shape == (10000, 1, 28, 28)
