"""Noise smoothing, written once over any method: SmoothGrad, SmoothGrad-squared, VarGrad.

Each input gets ``n_samples`` noisy copies x + N(0, sigma^2), with the paper's *relative*
noise sigma = noise_level * (max(x) - min(x)) per image (not Captum NoiseTunnel's absolute
sigma). The base method explains all copies, and the maps are reduced per input.

Noise is drawn on x's device from ``generator`` (which must live there), image by image in
batch order, so the maps depend on the seed but not on ``batch_size``.

The three reductions of the gradient share one noise stream (``noise_key`` ``gradient_noise``:
the runner seeds their generators alike, so at a stage they see the same noisy copies). Inside
:func:`~saliency_sanity.methods.reuse.shared_work` (one stage of the runner), :func:`smooth`
computes the per-image moments of the base maps, the mean and the centered second moment M2
(exact, two-pass per image), once per (base, model, x, target, n_samples, noise_level, generator
state, per_example, params) and derives every reduction from them: mean, M2/n + mean^2 (mean
square) and M2/n (variance); the generator is left where drawing the noise leaves it. So
SmoothGrad, SmoothGrad-squared and VarGrad together cost n_samples base passes per image, not
three times that. Outside shared work, or without a generator, every call draws and explains.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import torch
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import batch_slices, check_generator
from saliency_sanity.methods.gradients import input_gradients, integrated_gradients
from saliency_sanity.methods.registry import MethodFn, register
from saliency_sanity.methods.reuse import active_memo, generator_state, memoize

GRADIENT_NOISE = "gradient_noise"  # the noise_key of the smoothing methods over the gradient

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda maps: maps.mean(dim=1),
    "mean_square": lambda maps: maps.square().mean(dim=1),
    "variance": lambda maps: maps.var(dim=1, correction=0),
}
# The same reductions from the per-image moments (mean, M2 = sum of squared deviations, n).
FROM_MOMENTS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "mean": lambda mean, m2, n: mean.clone(),
    "mean_square": lambda mean, m2, n: m2 / n + mean.square(),
    "variance": lambda mean, m2, n: m2 / n,
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
    samples = partial(
        _sample_maps, base, model, x, target, n_samples=n_samples, noise_level=noise_level,
        generator=generator, batch_size=batch_size, per_example=per_example, params=params,
    )
    if generator is None or active_memo() is None:
        return torch.cat([REDUCTIONS[reduction](maps) for maps in samples()])

    def moments() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        chunks = [sample_moments(maps) for maps in samples()]
        return torch.cat([m for m, _ in chunks]), torch.cat([m2 for _, m2 in chunks]), generator.get_state()

    # batch_size only chunks the work, so it is not part of the key.
    key = ("smooth_moments", base, model, x, target, n_samples, float(noise_level), generator_state(generator),
           per_example, params)
    mean, m2, state_after = memoize(key, moments)
    generator.set_state(state_after)  # as if this call had drawn the noise itself
    return FROM_MOMENTS[reduction](mean, m2, n_samples)


def _sample_maps(
    base: MethodFn,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    n_samples: int,
    noise_level: float,
    generator: torch.Generator | None,
    batch_size: int | None,
    per_example: dict[str, torch.Tensor],
    params: dict,
) -> Iterator[torch.Tensor]:
    """``base``'s maps of the noisy copies, shaped (images, n_samples, ...), a chunk of images at a time."""
    sigma = relative_sigma(x, noise_level)
    images_per_call = None if batch_size is None else max(1, batch_size // n_samples)
    for s in batch_slices(x.shape[0], images_per_call):
        noisy = noisy_copies(x[s], sigma[s], n_samples, generator)
        extra = {k: v[s].repeat_interleave(n_samples, dim=0) for k, v in per_example.items()}
        maps = base(
            model, noisy, target[s].repeat_interleave(n_samples), batch_size=batch_size, **extra, **params
        )
        yield maps.view(-1, n_samples, *x.shape[1:])


def sample_moments(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean and centered second moment M2 = sum_i (g_i - mean)^2 of maps (images, n, ...).

    Two passes over each image's samples (all in one chunk), so no E[g^2] - E[g]^2 cancellation.
    """
    mean = maps.mean(dim=1)
    return mean, (maps - mean.unsqueeze(1)).square().sum(dim=1)


@register("smoothgrad", stochastic=True, noise_key=GRADIENT_NOISE)
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
        input_gradients, model, x, target, reduction="mean", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
    )


@register("smoothgrad_squared", stochastic=True, noise_key=GRADIENT_NOISE)
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
        input_gradients, model, x, target, reduction="mean_square", n_samples=n_samples,
        noise_level=noise_level, generator=generator, batch_size=batch_size,
    )


@register("vargrad", stochastic=True, noise_key=GRADIENT_NOISE)
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
        input_gradients, model, x, target, reduction="variance", n_samples=n_samples,
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
