"""Published weights files: the one error type, and their sha256 check.

A model registry entry with published weights (Inception v3, EfficientNet-Lite0) verifies its
file with :func:`verify_sha256` before loading it, and reports any failure as a
:class:`WeightsError` that names the config key to change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from saliency_sanity.data.download import ChecksumError, DataError, file_hash, hash_matches

log = logging.getLogger(__name__)


class WeightsError(DataError):
    """A model's weights are missing, unreachable or not the expected file."""


def verify_sha256(path: Path, expected: str | None, *, what: str, config_key: str) -> str:
    """Check ``path`` against ``expected`` (a full sha256 or a prefix of it); returns its full sha256.

    ``what`` names the file in messages ("Inception v3 weights file"), ``config_key`` the setting
    that gives the expected digest. With no ``expected``, the file's digest is logged.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist (config key '{config_key}')")
    actual = file_hash(path, "sha256")
    if expected is None:
        log.warning("no sha256 to check %s against (set %s); its sha256 is %s", path, config_key, actual)
    elif not hash_matches(actual, expected):
        raise ChecksumError(
            f"{what} {path} has sha256 {actual}, expected {expected}; it is corrupt or another file: "
            f"delete it, or correct '{config_key}'"
        )
    return actual
