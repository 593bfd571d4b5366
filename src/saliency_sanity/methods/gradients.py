"""Gradient-based methods: the plain gradient, Gradient x Input and Integrated Gradients.

All of them rest on :func:`input_gradients`, the one place that differentiates a model.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import batch_slices, chunked
from saliency_sanity.methods.completeness import completeness_error, logits_of, target_logits
from saliency_sanity.methods.registry import register
from saliency_sanity.methods.reuse import memoize

RIEMANN_RULES = ("right", "midpoint", "original")  # equal weights 1/steps; nested, so a path can be refined
WEIGHTED_RULES = ("trapezoid", "gauss_legendre")
PATH_RULES = RIEMANN_RULES + WEIGHTED_RULES


def _target_logit_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        logits = model(inputs)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model must return logits of shape (batch, classes); got {tuple(logits.shape)}"
            )
        # Examples are independent in eval mode, so the gradient of the sum is each example's own.
        selected = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, inputs)
    return grad


def input_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """d logit[target] / d x per example, in chunks of ``batch_size``.

    Differentiates w.r.t. the input only (``torch.autograd.grad``), so no ``.grad`` is ever
    written on the model's parameters.
    """
    return chunked(partial(_target_logit_gradients, model), batch_size, x, target)


def shared_input_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """:func:`input_gradients`, computed once per (model, x, target) within shared work.

    The gradient and Gradient x Input of one stage then cost one backward pass, not two. Each
    caller gets its own copy. Only the registered methods use it: a wrapper that explains fresh
    inputs (noisy copies) calls :func:`input_gradients`, so its inputs are not kept alive.
    """
    return memoize(("input_gradients", model, x, target), lambda: input_gradients(model, x, target, batch_size),
                   clone=True)


@register("gradient")
def gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Gradient of the target logit w.r.t. the input (Simonyan et al. 2014)."""
    return shared_input_gradients(model, x, target, batch_size)


@register("gradient_x_input")
def gradient_x_input(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Gradient times the input, elementwise (Shrikumar et al. 2016)."""
    return shared_input_gradients(model, x, target, batch_size) * x


def riemann_alphas(steps: int, rule: str, x: torch.Tensor) -> torch.Tensor:
    """Interpolation coefficients of the path, each point weighted 1/steps: right k/steps or midpoint
    (k - 1/2)/steps, k = 1..steps; or ``original``, the original code's ``steps`` evenly spaced points
    from 0 to 1, endpoints included ((k - 1)/(steps - 1), PAIR saliency's IntegratedGradients)."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    k = torch.arange(1, steps + 1, device=x.device, dtype=x.dtype)
    if rule == "right":
        return k / steps
    if rule == "midpoint":
        return (k - 0.5) / steps
    if rule == "original":
        return torch.linspace(0.0, 1.0, steps, device=x.device, dtype=x.dtype)
    raise ValueError(f"unknown Riemann rule {rule!r}; choose one of {RIEMANN_RULES}")


def weighted_points(steps: int, rule: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights summing to 1) of a weighted quadrature on [0, 1]: ``trapezoid``, ``steps``
    evenly spaced points with both endpoints weighted half; ``gauss_legendre``, the ``steps`` Legendre
    nodes, exact for integrands of degree up to 2 steps - 1."""
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
        weights = torch.ones(steps, dtype=torch.float64)
        weights[[0, -1]] = 0.5
        alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    elif rule == "gauss_legendre":
        if steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps}")
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, weights = torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights)
    else:
        raise ValueError(f"unknown weighted rule {rule!r}; choose one of {WEIGHTED_RULES}")
    return (alphas.to(device=x.device, dtype=x.dtype),
            (weights / weights.sum()).to(device=x.device, dtype=x.dtype))


def refined_alphas(steps: int, rule: str, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The next finer grid of ``rule`` that contains the grid of ``steps`` points, as (its step count,
    its points not in the coarser grid): right k/n -> j/2n (the odd j are new), midpoint
    (k - 1/2)/n -> (j - 1/2)/3n (j not 2 mod 3 are new), original i/(n - 1) -> i/(2n - 2) (odd i).
    A refinement thus reuses every gradient already taken."""
    if rule not in RIEMANN_RULES:
        raise ValueError(f"unknown Riemann rule {rule!r}; choose one of {RIEMANN_RULES}")
    if rule == "original" and steps == 1:  # the single point 0 -> both endpoints
        return 2, torch.ones(1, device=x.device, dtype=x.dtype)
    finer = {"right": 2 * steps, "midpoint": 3 * steps, "original": 2 * steps - 1}[rule]
    j = torch.arange(1, finer + 1, device=x.device, dtype=x.dtype)
    if rule == "right":
        return finer, j[j % 2 == 1] / finer
    if rule == "midpoint":
        return finer, (j[j % 3 != 2] - 0.5) / finer
    i = j[:-1]  # original: i = 1 .. finer - 1
    return finer, i[i % 2 == 1] / (finer - 1)


def _path_gradient_sums(
    model: nn.Module, base: torch.Tensor, delta: torch.Tensor, target: torch.Tensor, alphas: torch.Tensor,
    batch_size: int | None, weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum_k w_k grad f(x' + alpha_k (x - x')) per example (w_k = 1 unless given), the B x K path points
    built chunk by chunk."""
    steps = alphas.shape[0]
    summed = torch.zeros_like(base)
    for s in batch_slices(base.shape[0] * steps, batch_size):
        flat = torch.arange(s.start, s.stop, device=base.device)
        example, step = flat // steps, flat % steps
        alpha = alphas[step].view(-1, *([1] * (base.dim() - 1)))
        points = base[example] + alpha * delta[example]
        gradients = _target_logit_gradients(model, points, target[example])
        if weights is not None:
            gradients = gradients * weights[step].view_as(alpha)
        summed.index_add_(0, example, gradients)
    return summed


@register("integrated_gradients", needs_baseline=True, completeness=True)
def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    rule: str = "right",
    tolerance: float | None = None,
    max_steps: int = 400,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) by a quadrature over the straight path.

    (x - x') * mean_k grad(x' + alpha_k (x - x')), alpha_k from :func:`riemann_alphas`: the
    right rule by default (the IG paper's formula); ``rule="original"`` is what the code Adebayo et
    al. used computed (``steps`` evenly spaced points from 0 to 1, endpoints included, each weighted
    1/steps). ``trapezoid`` and ``gauss_legendre`` weight their points (:func:`weighted_points`).
    The B x steps path points are built chunk by chunk, so at most ``batch_size`` of them exist at once.

    With a ``tolerance`` (Riemann rules only), ``steps`` is where each example starts: while an example's completeness
    error (:func:`~saliency_sanity.methods.completeness.completeness_error`) is above it, its path is
    refined (:func:`refined_alphas`, reusing every gradient taken) up to ``max_steps``, so easy
    images stop early and hard ones get more points.
    """
    if rule not in PATH_RULES:
        raise ValueError(f"unknown IG rule {rule!r}; choose a Riemann rule {RIEMANN_RULES} or a weighted one "
                         f"{WEIGHTED_RULES}")
    base = resolve_baseline(x, baseline)
    delta = x - base
    if rule in WEIGHTED_RULES:
        if tolerance is not None:
            raise ValueError(f"a tolerance refines nested Riemann rules {RIEMANN_RULES}; rule {rule!r} is not one")
        alphas, weights = weighted_points(steps, rule, x)
        return delta * _path_gradient_sums(model, base, delta, target, alphas, batch_size, weights)
    summed = _path_gradient_sums(model, base, delta, target, riemann_alphas(steps, rule, x), batch_size)
    if tolerance is None:
        return delta * summed / steps
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number or None, got {tolerance}")
    counts = torch.full((x.shape[0],), steps, device=x.device)
    f_x, f_base = (target_logits(logits_of(model, z, batch_size), target) for z in (x, base))
    active = torch.arange(x.shape[0], device=x.device)
    while True:
        scale = counts[active].view(-1, *([1] * (x.dim() - 1)))
        errors = completeness_error(delta[active] * summed[active] / scale, f_x[active], f_base[active])
        active = active[errors > tolerance]
        finer, new_alphas = refined_alphas(steps, rule, x)
        if active.numel() == 0 or finer > max_steps:
            break
        summed[active] += _path_gradient_sums(model, base[active], delta[active], target[active], new_alphas,
                                              batch_size)
        counts[active], steps = finer, finer
    return delta * summed / counts.view(-1, *([1] * (x.dim() - 1)))
