"""Synthetic 1-D signals for the conv-sum model: steps, bumps and noise, from a seed.

Every signal is a piecewise-constant background (1 to ``max_steps`` jumps between levels drawn
in [-level, level]) plus Gaussian noise; a signal of class 1 also carries one narrow Gaussian bump. The
task "does the signal contain a bump?" is one a conv-sum model can learn (a bump-shaped filter
responds to bumps more than to steps), so trained and random filters can be compared on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SignalSpec:
    """How the signals are drawn; lengths in samples."""

    length: int = 64
    max_steps: int = 3
    level: float = 0.5  # background levels uniform in [-level, level]: steps up to 2 * level
    noise: float = 0.1
    bump_height: tuple[float, float] = (0.8, 1.5)
    bump_width: tuple[float, float] = (1.0, 2.5)  # Gaussian sigma
    margin: int = 4  # no jump or bump centre closer than this to either end

    def __post_init__(self):
        if self.length < 2 * self.margin + 2:
            raise ValueError(f"signal length {self.length} is too short for a margin of {self.margin} samples")
        if self.max_steps < 1 or self.noise < 0 or self.level < 0:
            raise ValueError(
                f"need max_steps >= 1, noise >= 0 and level >= 0, got {self.max_steps}, {self.noise}, {self.level}"
            )


def _steps(rng: np.random.Generator, spec: SignalSpec) -> np.ndarray:
    n_jumps = rng.integers(1, spec.max_steps + 1)
    jumps = np.sort(rng.choice(np.arange(spec.margin, spec.length - spec.margin), n_jumps, replace=False))
    levels = rng.uniform(-spec.level, spec.level, n_jumps + 1)
    return levels[np.searchsorted(jumps, np.arange(spec.length), side="right")]


def _bump(rng: np.random.Generator, spec: SignalSpec) -> np.ndarray:
    centre = rng.uniform(spec.margin, spec.length - spec.margin)
    sigma = rng.uniform(*spec.bump_width)
    height = rng.uniform(*spec.bump_height)
    return height * np.exp(-0.5 * ((np.arange(spec.length) - centre) / sigma) ** 2)


def make_signals(n: int, seed: int, spec: SignalSpec = SignalSpec()) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` signals (n, 1, length) float32 and their labels (n,) int64 (1: has a bump).

    Labels alternate 0, 1, 0, ... so every prefix is balanced; the same seed gives the same
    signals on every platform (NumPy's PCG64).
    """
    if n < 1:
        raise ValueError(f"need at least one signal, got n={n}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    signals = np.empty((n, spec.length))
    for k, label in enumerate(labels):
        signal = _steps(rng, spec) + spec.noise * rng.standard_normal(spec.length)
        signals[k] = signal + _bump(rng, spec) if label else signal
    return torch.from_numpy(signals[:, None].astype(np.float32)), torch.from_numpy(labels.astype(np.int64))
