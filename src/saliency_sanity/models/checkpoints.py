"""Model checkpoints: ``<name>.pt`` (architecture and state dict) with its ``<name>.json`` record."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saliency_sanity.contracts import RECORD_REQUIRED, record_path
from saliency_sanity.models.base import SanityModel
from saliency_sanity.models.registry import build_model
from saliency_sanity.runtime import atomic_write, write_json


def save_checkpoint(model: SanityModel, path: Path, record: dict) -> None:
    """Write ``<name>.pt`` (state dict + arch) and ``<name>.json`` (the record), each atomically."""
    atomic_write(path, lambda tmp: torch.save({"arch": model.arch, "state_dict": model.state_dict()}, tmp))
    write_json(record_path(path), record)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> SanityModel:
    """Load a model written by :func:`save_checkpoint`, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint {path} does not exist; train it first (snakemake {path})")
    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_model(payload["arch"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def read_record(model_path: Path) -> dict:
    """The checkpoint's JSON record (dataset, arch, labels, ...), next to the .pt file."""
    path = record_path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} (the record of {model_path}) does not exist; retrain the model to write it")
    record = json.loads(path.read_text())
    missing = [key for key in RECORD_REQUIRED if key not in record]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {missing}; retrain the model to rewrite it")
    return record
