"""Noise smoothing, written once over any method: SmoothGrad, SmoothGrad-squared, VarGrad.

Each input gets ``n_samples`` noisy copies x + N(0, sigma^2), with the paper's *relative*
noise sigma = noise_level * (max(x) - min(x)) per image (not Captum NoiseTunnel's absolute
sigma). The base method explains all copies, and the maps are reduced per input.

Noise is drawn on x's device from ``generator`` (which must live there), image by image in
batch order, so the maps depend on the seed but not on ``batch_size``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import batch_slices, check_generator
from saliency_sanity.methods.gradients import gradient, integrated_gradients
from saliency_sanity.methods.registry import MethodFn, register

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda maps: maps.mean(dim=1),
    "mean_square": lambda maps: maps.square().mean(dim=1),
    "variance": lambda maps: maps.var(dim=1, correction=0),
}


def relative_sigma(x: torch.Tensor, noise_level: float) -> torch.Tensor:
    """Per-image noise scale noise_level * (max - min), shaped (B,) ."""
    flat = x.flatten(1)
    return noise_level * (flat.amax(dim=1) - flat.amin(dim=1))


def noisy_copies(
    x: torch.Tensor, sigma: torch.Tensor, n_samples: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(len(x) * n_samples, ...) noisy inputs, the copies of each image consecutive."""
    draws = [
        image + s * torch.randn((n_samples, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
        for image, s in zip(x, sigma)
    ]
    return torch.cat(draws)


def smooth(
    base: MethodFn,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str,
    n_samples: int,
    noise_level: float,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    per_example: dict[str, torch.Tensor] | None = None,
    **params,
) -> torch.Tensor:
    """Reduce ``base``'s maps of noisy copies of each input.

    ``per_example`` holds tensors with one row per input (e.g. IG baselines), repeated for
    each copy; ``params`` go to ``base`` unchanged. With ``batch_size``, as many images are
    processed at once as keep their copies within it, and ``base`` chunks by it too.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {sorted(REDUCTIONS)}")
    if n_samples < 1 or noise_level < 0:
        raise ValueError(f"need n_samples >= 1 and noise_level >= 0, got {n_samples} and {noise_level}")
    check_generator(generator, x.device)
    per_example = per_example or {}
    sigma = relative_sigma(x, noise_level)
    images_per_call = None if batch_size is None else max(1, batch_size // n_samples)
    reduced = []
    for s in batch_slices(x.shape[0], images_per_call):
        noisy = noisy_copies(x[s], sigma[s], n_samples, generator)
        extra = {k: v[s].repeat_interleave(n_samples, dim=0) for k, v in per_example.items()}
        maps = base(
            model, noisy, target[s].repeat_interleave(n_samples), batch_size=batch_size, **extra, **params
        )
        reduced.append(REDUCTIONS[reduction](maps.view(-1, n_samples, *x.shape[1:])))
    return torch.cat(reduced)


@register("smoothgrad", stochastic=True)
def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies of the input."""
    return smooth(
        gradient, model, x, target, reduction="mean", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
    )


@register("smoothgrad_squared", stochastic=True)
def smoothgrad_squared(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad-squared (Hooker et al. 2019): mean squared gradient over noisy copies."""
    return smooth(
        gradient, model, x, target, reduction="mean_square", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
    )


@register("vargrad", stochastic=True)
def vargrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """VarGrad (Adebayo et al. 2018): variance (1/n) of the gradient over noisy copies."""
    return smooth(
        gradient, model, x, target, reduction="variance", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
    )


@register("ig_smoothgrad", needs_baseline=True, stochastic=True)
def ig_smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    n_samples: int = 50,
    noise_level: float = 0.15,
    steps: int = 50,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad over Integrated Gradients: mean IG map of noisy copies, same baseline each."""
    return smooth(
        integrated_gradients, model, x, target, reduction="mean", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
        per_example={"baseline": resolve_baseline(x, baseline)}, steps=steps,
    )
