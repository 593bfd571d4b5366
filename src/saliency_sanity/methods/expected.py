"""Expected gradients (Erion et al. 2021): Integrated Gradients with its baseline drawn from a
distribution and its path point drawn at random.

phi = E_{x' ~ D, alpha ~ U(0, 1)} (x - x') * grad f(x' + alpha (x - x')), estimated with one baseline
draw and one alpha per sample. The baseline is any registered one (the config's ``baseline``, by
default ``training``: the data distribution, as the article); the draws come from the baseline
registry (:meth:`~saliency_sanity.methods.registry.BoundMethod.baselines_for`), so the method is the
composition of IG with a distribution over baselines, not a copy of either.
"""

from __future__ import annotations

import torch
from torch import nn

from saliency_sanity.methods.common import check_generator
from saliency_sanity.methods.gradients import input_gradients
from saliency_sanity.methods.registry import register


@register("expected_gradients", needs_baseline=True, stochastic=True, baseline_draws="n_samples", opt_in=True)
def expected_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    n_samples: int = 50,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Expected gradients: (x - x'_j) * grad f(x'_j + alpha_j (x - x'_j)) averaged over n_samples draws.

    ``baseline`` is (n_samples, *x.shape), one draw per sample (the registry passes the configured
    baseline's draws), or one baseline of x's shape (or None: zeros) shared by every sample.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    check_generator(generator, x.device)
    if baseline is None:
        baseline = torch.zeros_like(x)
    if baseline.shape == x.shape:
        baseline = baseline.expand(n_samples, *x.shape)
    if baseline.shape != (n_samples, *x.shape):
        raise ValueError(f"expected gradients takes one baseline of x's shape {tuple(x.shape)} or n_samples = "
                         f"{n_samples} of them, got {tuple(baseline.shape)}")
    alphas = torch.rand(n_samples, x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    delta = x - baseline
    points = (baseline + alphas.view(n_samples, -1, *([1] * (x.dim() - 1))) * delta).flatten(0, 1)
    gradients = input_gradients(model, points, target.repeat(n_samples), batch_size).view_as(delta)
    return (delta * gradients).mean(0)
