"""Helpers shared by the two theory analyses: method calls through the harness, correlations, writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from saliency_sanity import similarity
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


def spearman_to(maps: np.ndarray, reference: np.ndarray, normalization: str = "max") -> dict[str, np.ndarray]:
    """Per-example Spearman correlations (absolute and signed maps) of maps with reference maps.

    Both are (N, C, ...) arrays; 1-D signals (N, C, L) are treated as (N, C, 1, L) images. The
    normalizations are the randomization tests' (:mod:`saliency_sanity.similarity`).
    """
    a, b = (np.asarray(m, dtype=np.float64) for m in (maps, reference))
    if a.ndim == 3:
        a, b = a[:, :, None], b[:, :, None]
    return {
        "spearman_abs": similarity.spearman(
            similarity.normalize_absolute(a, normalization), similarity.normalize_absolute(b, normalization)
        ),
        "spearman_signed": similarity.spearman(
            similarity.normalize_signed(a, normalization), similarity.normalize_signed(b, normalization)
        ),
    }


def write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


