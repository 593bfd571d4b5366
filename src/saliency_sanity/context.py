"""What an explanation may need beyond its config parameters: seed and stage, batch size, data.

A :class:`Context` is handed to :meth:`Method.bind <saliency_sanity.methods.registry.Method.bind>`
and to baselines. Noise is seeded per (seed, stage, noise key), so a rerun reproduces every map,
stage 0 is the same in every randomization mode, and methods that share a noise key (SmoothGrad,
SmoothGrad-squared, VarGrad) see the same noisy copies. Draws that define the explanation rather
than sample it (a stochastic baseline) come from :meth:`Context.fixed_generator`: the same at
every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from saliency_sanity.runtime import derive_seed


@dataclass(frozen=True)
class ValidRange:
    """The values a pixel may take in the model's input space, per channel or for all channels:
    [0, 1] for MNIST; ((0 - mean) / std, (1 - mean) / std) for a normalized ImageNet model."""

    low: float | Sequence[float] = 0.0
    high: float | Sequence[float] = 1.0

    def bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) shaped (1, C, 1, ...) to broadcast against x (B, C, ...)."""
        shape = (1, -1, *([1] * (x.dim() - 2)))
        low, high = (torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1) for v in (self.low, self.high))
        if low.numel() not in (1, x.shape[1]) or high.numel() not in (1, x.shape[1]) or not (low < high).all():
            raise ValueError(f"valid range {self} does not fit inputs with {x.shape[1]} channels "
                             "(one low < high, or one per channel)")
        return low.view(shape), high.view(shape)


@dataclass(frozen=True)
class Context:
    """The seed and stage of an explanation, its batch size, the input space's valid range, and
    training data for distribution baselines."""

    seed: int = 0
    stage: int = 0
    batch_size: int | None = None  # rows per forward/backward pass; None: all at once
    train_data: torch.Tensor | None = None  # (N, C, ...) training inputs, for baselines drawn from the data
    valid_range: ValidRange = ValidRange()
    draw: int = 0  # which draw of a stochastic baseline (a method may average several)

    def at_stage(self, stage: int) -> Context:
        return replace(self, stage=stage)

    def noise_seed(self, key: str) -> int:
        """The seed of noise stream ``key`` at this stage."""
        return derive_seed(self.seed, "stage", self.stage, "method", key)

    def generator(self, key: str, device: torch.device | str) -> torch.Generator:
        """A generator on ``device`` for noise stream ``key`` at this stage."""
        return torch.Generator(device=device).manual_seed(self.noise_seed(key))

    def fixed_generator(self, key: str, device: torch.device | str) -> torch.Generator:
        """A generator on ``device`` for stream ``key`` and this draw, the same at every stage."""
        parts = ("fixed", key) + (("draw", self.draw) if self.draw else ())
        return torch.Generator(device=device).manual_seed(derive_seed(self.seed, *parts))
