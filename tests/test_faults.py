"""Faults while results are written: a full disk is one clear error that leaves the earlier file intact."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from saliency_sanity import runtime
from saliency_sanity.cli import main
from saliency_sanity.models import build_model
from saliency_sanity.models.checkpoints import save_checkpoint
from saliency_sanity.runtime import DiskFullError, atomic_write, write_json


def _full_disk(tmp: Path) -> None:
    with open(tmp, "w") as handle:
        handle.write("half a fi")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_named_and_the_earlier_file_stays(tmp_path):
    target = tmp_path / "results" / "scores.csv"
    write_json(target, {"good": 1})
    with pytest.raises(DiskFullError, match="disk holding .* is full.*free space there and rerun"):
        atomic_write(target, _full_disk)
    assert target.read_text() == '{\n  "good": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["scores.csv"]  # no temporary left


def test_a_writer_that_hides_the_full_disk_is_still_named(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError ('unexpected pos ...'): the free space tells."""
    monkeypatch.setattr(runtime.shutil, "disk_usage", lambda folder: SimpleNamespace(free=0))

    def torch_like(tmp: Path) -> None:
        tmp.write_bytes(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 576 vs 534")

    with pytest.raises(DiskFullError, match="unexpected pos"):
        atomic_write(tmp_path / "model.pt", torch_like)
    assert not list(tmp_path.iterdir())


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def broken(tmp: Path) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="^a bug$"):
        atomic_write(tmp_path / "x.csv", broken)


def _small_filesystem(tmp_path: Path, size: str) -> Path:
    """A tmpfs of ``size`` (needs root and a kernel that lets it mount one; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    return mount


@pytest.fixture
def small_disk(tmp_path):
    mount = _small_filesystem(tmp_path, "256k")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_leaves_nothing_half_written(small_disk):
    """On a real 256 KiB filesystem: a checkpoint and a CSV too large to fit fail with the one error, the
    small earlier files stay, and no temporary is left behind."""
    checkpoint, table = small_disk / "model.pt", small_disk / "scores.csv"
    model = build_model("mlp", seed=0)  # 6M weights: far more than 256 KiB
    write_json(checkpoint.with_suffix(".json"), {"ok": True})
    atomic_write(table, lambda tmp: pd.DataFrame({"score": [1.0]}).to_csv(tmp, index=False))
    with pytest.raises(DiskFullError):
        save_checkpoint(model, checkpoint, {"arch": "mlp"})
    with pytest.raises(DiskFullError):
        atomic_write(table, lambda tmp: pd.DataFrame({"score": torch.rand(100_000).tolist()}).to_csv(tmp, index=False))
    assert pd.read_csv(table)["score"].tolist() == [1.0]
    assert sorted(p.name for p in small_disk.iterdir()) == ["model.json", "scores.csv"]


def test_the_cli_says_a_full_disk_in_one_line(small_disk, caplog):
    """A step's command on a full disk exits 1 with the one error line, no traceback, and writes nothing."""
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # fill the disk to the last block
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    record = small_disk / "results" / "config.yaml"
    assert main(["record-config", "--settings", '{"preset": "smoke", "notes": "' + "x" * 8192 + '"}',
                 "--out", str(record)]) == 1
    assert "is full" in caplog.text and "free space there and rerun" in caplog.text
    assert not list(record.parent.iterdir())
