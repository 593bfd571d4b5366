"""Device selection, seeding, the environment record and the one atomic writer shared by every step.

torch is imported where it is used, not here: the figure jobs use only the writers, and importing torch
costs every such job seconds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; anything else must be a valid device."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise ValueError(f"bad device {spec!r} (config key 'device'): use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested (config key 'device') but CUDA is not available; use 'auto' or 'cpu'")
    return device


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from a base seed and keys, stable across runs and platforms (unlike hash())."""
    text = "/".join(str(part) for part in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator seeded the same way."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def library_versions() -> dict[str, str]:
    """Versions recorded next to every result, so a number can be traced to its software."""
    import captum
    import scipy
    import skimage
    import torch
    import torchvision

    from saliency_sanity import __version__

    return {
        "python": platform.python_version(),
        "saliency_sanity": __version__,
        "torch": str(torch.__version__),  # TorchVersion: a str subclass YAML cannot represent
        "torchvision": str(torchvision.__version__),
        "captum": captum.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
    }


# below this much free space a failed write is taken for a full disk (torch.save reports one as a RuntimeError)
LOW_SPACE_BYTES = 1 << 20


class DiskFullError(OSError):
    """The disk (or quota) holding a result ran out while it was written."""


def _disk_full(err: Exception, folder: Path) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return shutil.disk_usage(folder).free < LOW_SPACE_BYTES


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it into place: readers and
    reruns never see half a file, and a failed write leaves nothing behind (an earlier ``path`` stays as
    it was). A full disk is said as such, not as the writer's own error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as err:
        if _disk_full(err, path.parent):
            raise DiskFullError(f"the disk holding {path.parent} is full ({err}); {path} was not written and "
                                "any earlier version is untouched: free space there and rerun") from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """A text file, written atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """A JSON record (sorted keys, indented), written atomically."""
    write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """An uncompressed .npz, written atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, **arrays)

    atomic_write(path, write)
