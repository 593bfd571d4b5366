"""Helpers shared by the two theory analyses: method calls through the harness, correlations, writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from saliency_sanity.harness import Harness
from saliency_sanity.methods.registry import get_method
from saliency_sanity.runtime import atomic_write

SPEARMAN_METRICS = ("spearman_abs", "spearman_signed")


def explain(
    name: str, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *, ig_steps: int, seed: int
) -> torch.Tensor:
    """One registry method's maps through the harness, with the theory's IG steps where it takes steps."""
    params = {"steps": ig_steps} if "steps" in get_method(name).accepts() else {}
    return Harness({name: params}, methods=[name], seed=seed).explain(model, x, target)[name]


def write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


