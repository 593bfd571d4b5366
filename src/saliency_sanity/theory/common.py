"""Helpers shared by the two theory analyses: settings, method calls, correlations, writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

import saliency_sanity.methods  # noqa: F401  (importing the package registers every method)
from saliency_sanity import similarity
from saliency_sanity.methods.registry import get_method
from saliency_sanity.randomization import derive_seed
from saliency_sanity.runtime import atomic_write, write_npz  # noqa: F401  (write_npz: re-exported to the checks)

SPEARMAN_METRICS = ("spearman_abs", "spearman_signed")


def section(config: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """config[keys[0]][keys[1]]..., with an error naming the missing config key."""
    value: Any = config
    for depth, key in enumerate(keys):
        if not isinstance(value, Mapping) or key not in value:
            raise ValueError(f"config key {'.'.join(keys[: depth + 1])} is missing; see workflow/config/default.yaml")
        value = value[key]
    return value


def positive_int(settings: Mapping[str, Any], key: str, where: str) -> int:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config key {where}.{key} must be a positive integer, got {value!r}")
    return value


def positive_float(settings: Mapping[str, Any], key: str, where: str) -> float:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"config key {where}.{key} must be a number > 0, got {value!r}")
    return float(value)


def explain(
    name: str, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *, ig_steps: int, seed: int
) -> torch.Tensor:
    """One registry method's maps, with the theory's IG steps and a seeded generator where it samples."""
    method = get_method(name)
    params: dict[str, Any] = {}
    if "steps" in method.accepts():
        params["steps"] = ig_steps
    if method.stochastic:
        params["generator"] = torch.Generator(device=x.device).manual_seed(derive_seed(seed, "theory", name))
    return method(model, x, target, **params)


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


