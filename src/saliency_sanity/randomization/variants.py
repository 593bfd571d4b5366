"""The registry of sanity-check variants: how a verdict reads a randomization run's scores.

The paper's model-parameter randomization test (MPRT) is one reading of a run; the later variants
change either what is run or what is read (Hedström et al. 2023, Sixt et al. 2020):

- ``mprt``: each similarity metric between the original map and the map after every block is
  re-initialized; passes when low.
- ``mprt_curve``: the mean similarity over the stages of a cascade (Quantus' average correlation):
  unlike ``mprt`` it depends on the order and the granularity of the cascade.
- ``smprt``: ``mprt`` with each explanation averaged over noisy copies of the input before it is
  compared (:class:`NoiseAverage`), so that a method's noise does not pass for randomization.
- ``emprt``: the rise of the map's discrete entropy (:func:`discrete_entropy`) from the original to the
  fully randomized model, as the log ratio log(H(randomized) / H(original)); passes when above the threshold
  (the map grew more complex). The log makes the score 0 in expectation when both maps are draws of one
  distribution (the i.i.d. noise control): the mean of plain ratios sits above 1 there (Jensen's inequality),
  by 2 % on the MNIST CNN's noise maps, enough for a tight CI to pass noise.
- ``random_logit``: the similarity between the map for the predicted class and the map for a random
  other class of the same model; passes when low.

A variant is one decorated function ``fn(run) -> {metric: per-image scores}`` with the run it reads
(:data:`RUNS`), the side of the threshold that passes (:data:`CRITERIA`), whether it depends on the
randomization protocol, and whether it needs every stage of a cascade (else the run re-initializes
every block at once, mode ``full``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from saliency_sanity.methods.common import batch_slices
from saliency_sanity.registry import Registry
from saliency_sanity.runtime import derive_seed
from saliency_sanity.verdicts import ENTROPY

RANDOMIZED, SMOOTHED, RANDOM_LOGIT = "randomized", "smoothed", "random_logit"
RUNS = (RANDOMIZED, SMOOTHED, RANDOM_LOGIT)  # the runs of a protocol setting a variant may read
CRITERIA = ("below", "above")  # a score passes when below the threshold (similarity) or above it (entropy rise)
ENTROPY_FLOOR = 1e-3  # nats added to both entropies: a map that dies (entropy 0) is a strong fail, not a NaN


@dataclass(frozen=True)
class RunScores:
    """One series' scores in one run: per stage, each metric's per-image similarity to stage 0, and each map's
    discrete entropy."""

    similarity: Sequence[dict[str, np.ndarray]]
    entropy: Sequence[np.ndarray]


ScoreFn = Callable[[RunScores], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Variant:
    name: str
    score: ScoreFn
    run: str
    criterion: str
    protocol_dependent: bool = True  # False: the same under every protocol setting (no weights re-drawn)
    needs_curve: bool = False  # True: reads every stage of the cascade, not only the last
    description: str = ""


VARIANTS: Registry[Variant] = Registry("sanity-check variant")


def register_variant(name: str, *, run: str, criterion: str, protocol_dependent: bool = True,
                     needs_curve: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(run_scores) -> {metric: per-image scores}`` as variant ``name``."""
    if run not in RUNS or criterion not in CRITERIA:
        raise ValueError(f"variant {name!r}: run must be one of {list(RUNS)} and criterion one of {list(CRITERIA)}")

    def decorator(fn: ScoreFn) -> ScoreFn:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        VARIANTS.add(name, Variant(name, fn, run, criterion, protocol_dependent, needs_curve, doc))
        return fn

    return decorator


def discrete_entropy(maps: np.ndarray, bins: int = 100) -> np.ndarray:
    """Per map (N, H, W) with values in [0, 1]: the Shannon entropy (nats) of the histogram of its values in
    ``bins`` equal bins over [0, 1] (the last bin closed). A constant map has entropy 0; values spread evenly over
    k bins have log k; i.i.d. uniform noise approaches log(bins)."""
    maps = np.asarray(maps, dtype=float).reshape(len(maps), -1)
    index = np.clip((maps * bins).astype(np.int64), 0, bins - 1)
    counts = np.stack([np.bincount(row, minlength=bins) for row in index]).astype(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


@dataclass(frozen=True)
class NoiseAverage:
    """sMPRT's denoising: each input explained as the mean of its maps over ``n_samples`` noisy copies, with
    noise of ``noise_level`` x the image's value range (as SmoothGrad). The copies are drawn from a seed alone,
    so every stage sees the same ones and a difference between stages comes from the model."""

    n_samples: int = 10
    noise_level: float = 0.1
    images_per_call: int = 100  # noisy copies explained per harness call: bounds memory (images x n_samples)

    def __post_init__(self) -> None:
        if self.n_samples < 1 or self.noise_level < 0:
            raise ValueError(f"smprt needs n_samples >= 1 and noise_level >= 0, got {self.n_samples}, "
                             f"{self.noise_level}")

    def copies(self, x: torch.Tensor, seed: int, first: int = 0) -> torch.Tensor:
        """(len(x) * n_samples, ...) noisy inputs, each image's copies consecutive, on x's device; image i's noise
        comes from (seed, first + i) alone, so that a chunk of images gets the copies the whole batch would."""
        flat = x.flatten(1)
        sigma = self.noise_level * (flat.amax(dim=1) - flat.amin(dim=1))
        noise = torch.stack([torch.randn((self.n_samples, *x.shape[1:]), dtype=x.dtype,
                                         generator=torch.Generator().manual_seed(derive_seed(seed, "smprt", first + i)))
                             for i in range(len(x))])
        noise = noise.to(x.device) * sigma.view(-1, *[1] * x.dim())
        return (x.unsqueeze(1) + noise).flatten(0, 1)

    def chunks(self, n: int) -> list[slice]:
        """The images of each harness call: at most images_per_call copies at once."""
        return list(batch_slices(n, max(1, self.images_per_call // self.n_samples)))

    def reduce(self, maps: torch.Tensor) -> torch.Tensor:
        """The mean over each image's copies: (len(x), ...) maps."""
        return maps.view(-1, self.n_samples, *maps.shape[1:]).mean(dim=1)


@register_variant("mprt", run=RANDOMIZED, criterion="below")
def mprt(run: RunScores) -> dict[str, np.ndarray]:
    """Similarity after every block is re-initialized (the paper's test)."""
    return dict(run.similarity[-1])


@register_variant("mprt_curve", run=RANDOMIZED, criterion="below", needs_curve=True)
def mprt_curve(run: RunScores) -> dict[str, np.ndarray]:
    """Mean similarity over the stages of the cascade (stage 0 left out)."""
    stages = run.similarity[1:]
    return {metric: np.mean([stage[metric] for stage in stages], axis=0) for metric in stages[0]}


@register_variant("smprt", run=SMOOTHED, criterion="below")
def smprt(run: RunScores) -> dict[str, np.ndarray]:
    """Similarity after full randomization of maps averaged over noisy copies of the input (sMPRT)."""
    return dict(run.similarity[-1])


@register_variant("emprt", run=RANDOMIZED, criterion="above")
def emprt(run: RunScores) -> dict[str, np.ndarray]:
    """Rise of the map's discrete entropy, log(H(fully randomized) / H(original)) (eMPRT); both entropies get
    ENTROPY_FLOOR, so that a map that dies after randomization scores a large fall and two constant maps 0."""
    before, after = (np.asarray(h, dtype=float) + ENTROPY_FLOOR for h in (run.entropy[0], run.entropy[-1]))
    return {ENTROPY: np.log(after / before)}


@register_variant("random_logit", run=RANDOM_LOGIT, criterion="below", protocol_dependent=False)
def random_logit(run: RunScores) -> dict[str, np.ndarray]:
    """Similarity between the maps for the predicted class and for a random other class (RandomLogit)."""
    return dict(run.similarity[-1])
