"""What an explanation may need beyond its config parameters: seed and stage, batch size, data.

A :class:`Context` is handed to :meth:`Method.bind <saliency_sanity.methods.registry.Method.bind>`
and to baselines. Noise is seeded per (seed, stage, noise key), so a rerun reproduces every map,
stage 0 is the same in every randomization mode, and methods that share a noise key (SmoothGrad,
SmoothGrad-squared, VarGrad) see the same noisy copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saliency_sanity.runtime import derive_seed


@dataclass(frozen=True)
class Context:
    """The seed and stage of an explanation, its batch size, and training data for distribution baselines."""

    seed: int = 0
    stage: int = 0
    batch_size: int | None = None  # rows per forward/backward pass; None: all at once
    train_data: torch.Tensor | None = None  # (N, C, ...) training inputs, for baselines drawn from the data

    def at_stage(self, stage: int) -> Context:
        return Context(self.seed, stage, self.batch_size, self.train_data)

    def noise_seed(self, key: str) -> int:
        """The seed of noise stream ``key`` at this stage."""
        return derive_seed(self.seed, "stage", self.stage, "method", key)

    def generator(self, key: str, device: torch.device | str) -> torch.Generator:
        """A generator on ``device`` for noise stream ``key`` at this stage."""
        return torch.Generator(device=device).manual_seed(self.noise_seed(key))
