"""Fetching files with checksums: from a local mirror or the web, with retries, written atomically.

Every file that lands in its target folder has passed its checksum (md5 or sha256): it is written
to a temporary file beside the target and moved into place only after the checksum matched, so an
interrupted or corrupt transfer never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

from tqdm.auto import tqdm

from saliency_sanity.runtime import atomic_write

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


def mirror_folder(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror to use: the argument, else ``$SALIENCY_DATA_MIRROR``, else None (the web)."""
    mirror = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV) or None
    return Path(mirror) if mirror is not None else None


def fetch_files(
    files: Mapping[str, str],
    urls: tuple[str, ...],
    target_dir: Path,
    mirror_dir: Path | None,
    *,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Make sure ``target_dir`` holds every file of ``files`` (name -> md5), verified.

    A file already there with the right md5 is kept. Otherwise it is copied from ``mirror_dir``
    when one is given, else downloaded from the first of ``urls`` that delivers it.
    """
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    target_dir.mkdir(parents=True, exist_ok=True)
    for filename, md5 in files.items():
        target = target_dir / filename
        if target.is_file() and md5sum(target) == md5:
            continue
        if mirror_dir is not None:
            copy_from_mirror(mirror_dir / filename, target, md5)
        else:
            download(urls, filename, target, md5, retries=retries, timeout=timeout)
    return target_dir


def copy_from_mirror(source: Path, target: Path, expected: str, *, algorithm: str = "md5") -> None:
    """Copy a mirrored file into place after its checksum matched."""
    if not source.is_file():
        raise MirrorError(
            f"data mirror has no {source}; the mirror (argument, {MIRROR_ENV} or config key "
            f"'{MIRROR_CONFIG_KEY}') must be laid out as <mirror>/<dataset>/raw/<file> (or the dataset's own folder, e.g. "
            f"imagenet/images)"
        )
    with open(source, "rb") as src:
        write_verified(target, expected, lambda out: shutil.copyfileobj(src, out, CHUNK_BYTES),
                       origin=str(source), algorithm=algorithm)


def download(
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
                        write_verified(target, expected, lambda out: _stream(response, out, bar.update),
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


def reachable(url: str, timeout: float = 5) -> bool:
    """Whether ``url`` answers a HEAD request (so that a download can be planned), within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def _stream(source: BinaryIO, out: BinaryIO, progress: Callable[[int], object]) -> None:
    for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
        out.write(chunk)
        progress(len(chunk))


def write_verified(
    target: Path, expected: str, fill: Callable[[BinaryIO], None], *, origin: str, algorithm: str = "md5"
) -> None:
    """Write via ``fill`` (atomically); the file goes into place only if its hash matches ``expected``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            fill(out)
        actual = file_hash(tmp, algorithm)
        if not hash_matches(actual, expected):
            raise ChecksumError(
                f"checksum mismatch for {target.name} from {origin}: expected {algorithm} {expected}, "
                f"got {actual} (corrupt or truncated file)"
            )

    atomic_write(target, write)
