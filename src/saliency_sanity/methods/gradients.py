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
ADAPTIVE_RULES = RIEMANN_RULES + ("trapezoid",)  # nested: a finer grid contains the coarser one
REFINEMENTS = ("uniform", "local")  # refine every interval of an image's path, or where its integrand jumps


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


def trapezoid_weights(alphas: torch.Tensor) -> torch.Tensor:
    """Weights of the trapezoid rule on sorted points from 0 to 1 (any spacing); they sum to 1."""
    gaps = alphas.diff()
    return (torch.cat([gaps, gaps.new_zeros(1)]) + torch.cat([gaps.new_zeros(1), gaps])) / 2


def weighted_points(steps: int, rule: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights summing to 1) of a weighted quadrature on [0, 1]: ``trapezoid``, ``steps``
    evenly spaced points with both endpoints weighted half; ``gauss_legendre``, the ``steps`` Legendre
    nodes, exact for integrands of degree up to 2 steps - 1."""
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
        alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        weights = trapezoid_weights(alphas)
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
    refine: str = "uniform",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) by a quadrature over the straight path.

    (x - x') * mean_k grad(x' + alpha_k (x - x')), alpha_k from :func:`riemann_alphas`: the
    right rule by default (the IG paper's formula); ``rule="original"`` is what the code Adebayo et
    al. used computed (``steps`` evenly spaced points from 0 to 1, endpoints included, each weighted
    1/steps). ``trapezoid`` and ``gauss_legendre`` weight their points (:func:`weighted_points`).
    The B x steps path points are built chunk by chunk, so at most ``batch_size`` of them exist at once.

    With a ``tolerance`` (nested rules: the Riemann rules and the trapezoid), ``steps`` is where each
    example starts: while an example's completeness error
    (:func:`~saliency_sanity.methods.completeness.completeness_error`) is above it, its path is refined
    (:func:`adaptive_integrated_gradients`, reusing every gradient taken) up to ``max_steps``, so easy
    images stop early and hard ones get more points. ``refine="local"`` (trapezoid only) bisects only
    the intervals where the integrand jumps (:func:`locally_refined_integrated_gradients`).
    """
    if rule not in PATH_RULES:
        raise ValueError(f"unknown IG rule {rule!r}; choose a Riemann rule {RIEMANN_RULES} or a weighted one "
                         f"{WEIGHTED_RULES}")
    base = resolve_baseline(x, baseline)
    delta = x - base
    if refine not in REFINEMENTS:
        raise ValueError(f"unknown refinement {refine!r}; choose one of {REFINEMENTS}")
    if refine == "local":
        if rule != "trapezoid" or tolerance is None:
            raise ValueError("refine='local' refines the trapezoid rule to a tolerance: set rule='trapezoid' and a tolerance")
        return locally_refined_integrated_gradients(model, x, target, baseline=base, steps=steps, tolerance=tolerance,
                                                    max_steps=max_steps, batch_size=batch_size)[0]
    if tolerance is not None:
        return adaptive_integrated_gradients(model, x, target, baseline=base, steps=steps, rule=rule,
                                             tolerance=tolerance, max_steps=max_steps, batch_size=batch_size)[0]
    if rule in WEIGHTED_RULES:
        alphas, weights = weighted_points(steps, rule, x)
        return delta * _path_gradient_sums(model, base, delta, target, alphas, batch_size, weights)
    return delta * _path_gradient_sums(model, base, delta, target, riemann_alphas(steps, rule, x), batch_size) / steps


def adaptive_integrated_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, baseline: torch.Tensor | None = None,
    steps: int = 16, rule: str = "midpoint", tolerance: float = 0.05, max_steps: int = 400,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG with each example's path refined until its completeness error is at most ``tolerance``:
    (maps, the path points each example took).

    Every example starts with ``steps`` points of a nested rule (a Riemann rule, or ``trapezoid``:
    i/(n - 1) with both ends weighted half); while an example's error is above the tolerance its grid
    is refined (:func:`refined_alphas`; every gradient taken is reused), unless that would pass
    ``max_steps``. Easy images stop early, hard ones get the points: the passes go where the error is.
    Costs two forward passes per example besides the gradients.
    """
    if rule not in ADAPTIVE_RULES:
        raise ValueError(f"a tolerance refines nested rules {ADAPTIVE_RULES}; rule {rule!r} is not one")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number or None, got {tolerance}")
    base = resolve_baseline(x, baseline)
    delta = x - base
    if rule == "trapezoid":  # the ends (weight 1/2) apart from the interior points, which refinement adds to
        if steps < 2:
            raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
        grid = torch.linspace(0.0, 1.0, steps, device=x.device, dtype=x.dtype)
        ends = _path_gradient_sums(model, base, delta, target, grid[[0, -1]], batch_size) / 2
        summed = ends + _path_gradient_sums(model, base, delta, target, grid[1:-1], batch_size)
        nested, intervals = "original", lambda n: n - 1
    else:
        summed = _path_gradient_sums(model, base, delta, target, riemann_alphas(steps, rule, x), batch_size)
        nested, intervals = rule, lambda n: n
    counts = torch.full((x.shape[0],), steps, device=x.device)
    f_x, f_base = (target_logits(logits_of(model, z, batch_size), target) for z in (x, base))
    active = torch.arange(x.shape[0], device=x.device)

    def estimate(index: torch.Tensor) -> torch.Tensor:
        scale = intervals(counts[index]).view(-1, *([1] * (x.dim() - 1)))
        return delta[index] * summed[index] / scale

    while True:
        errors = completeness_error(estimate(active), f_x[active], f_base[active])
        active = active[errors > tolerance]
        finer, new_alphas = refined_alphas(steps, nested, x)
        if active.numel() == 0 or finer > max_steps:
            break
        summed[active] += _path_gradient_sums(model, base[active], delta[active], target[active], new_alphas,
                                              batch_size)
        counts[active], steps = finer, finer
    return estimate(torch.arange(x.shape[0], device=x.device)), counts


def _gradients_at(
    model: nn.Module, base: torch.Tensor, delta: torch.Tensor, target: torch.Tensor, examples: torch.Tensor,
    alphas: torch.Tensor, batch_size: int | None,
) -> torch.Tensor:
    """grad f(x'_e + alpha (x_e - x'_e)) for each (example e, alpha) pair, (R, *x.shape[1:]), in chunks."""
    out = torch.empty((len(examples), *base.shape[1:]), device=base.device, dtype=base.dtype)
    for s in batch_slices(len(examples), batch_size):
        e, alpha = examples[s], alphas[s].view(-1, *([1] * (base.dim() - 1)))
        out[s] = _target_logit_gradients(model, base[e] + alpha * delta[e], target[e])
    return out


def locally_refined_integrated_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, baseline: torch.Tensor | None = None,
    steps: int = 5, tolerance: float = 0.05, max_steps: int = 400, per_round: int = 2,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG by the trapezoid rule on each example's own grid, refined where the path crosses activation
    boundaries: (maps, the path points each example took).

    A ReLU network's integrand along the path, h(alpha) = grad f(x' + alpha delta) . delta, is piecewise
    constant: the quadrature error sits in the intervals where h jumps, and is at most
    |h(b) - h(a)| (b - a) / 2 in an interval [a, b] with one jump. Each example starts from ``steps``
    evenly spaced points; while its completeness error is above ``tolerance`` and it has taken fewer
    than ``max_steps`` points, the ``per_round`` intervals with the largest such bound are halved, for
    all such examples in one batched pass. Every gradient taken stays in the sum. Costs two forward
    passes per example besides the gradients. A heuristic: an interval whose jumps cancel at its ends
    shows no bound and waits until the others are resolved.
    """
    if steps < 2:
        raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number, got {tolerance}")
    base = resolve_baseline(x, baseline)
    delta = x - base
    n, dims = x.shape[0], tuple(range(1, x.dim()))
    grid = torch.linspace(0.0, 1.0, steps, device=x.device, dtype=x.dtype)
    examples = torch.arange(n, device=x.device).repeat_interleave(steps)
    first = _gradients_at(model, base, delta, target, examples, grid.repeat(n), batch_size).view(n, steps, *x.shape[1:])
    alphas, gradients = list(grid.expand(n, -1)), list(first)
    f_x, f_base = (target_logits(logits_of(model, z, batch_size), target) for z in (x, base))
    maps = torch.empty_like(x)
    while True:
        todo, new_alphas = [], []
        for i in range(n):
            maps[i] = delta[i] * torch.einsum("k,k...->...", trapezoid_weights(alphas[i]), gradients[i])
            if len(alphas[i]) + per_round > max_steps:
                continue
            error = completeness_error(maps[i:i + 1], f_x[i:i + 1], f_base[i:i + 1]).item()
            if error > tolerance:
                h = (gradients[i] * delta[i]).sum(dims)
                bound = h.diff().abs() * alphas[i].diff()
                worst = bound.topk(min(per_round, len(bound))).indices
                todo += [i] * len(worst)
                new_alphas.append((alphas[i][worst] + alphas[i][worst + 1]) / 2)
        if not todo:
            break
        index = torch.tensor(todo, device=x.device)
        new = _gradients_at(model, base, delta, target, index, torch.cat(new_alphas), batch_size)
        for i in sorted(set(todo)):
            rows = index == i
            merged, order = torch.cat([alphas[i], torch.cat(new_alphas)[rows]]).sort()
            alphas[i], gradients[i] = merged, torch.cat([gradients[i], new[rows]])[order]
    return maps, torch.tensor([len(a) for a in alphas], device=x.device)
