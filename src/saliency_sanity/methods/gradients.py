"""Gradient-based methods: the plain gradient, Gradient x Input and Integrated Gradients.

All of them rest on :func:`input_gradients`, the one place that differentiates a model.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import batch_slices, chunked
from saliency_sanity.methods.registry import register
from saliency_sanity.methods.reuse import memoize

RIEMANN_RULES = ("right", "midpoint", "original")


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


@register("integrated_gradients", needs_baseline=True)
def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    rule: str = "right",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) by a Riemann sum over the straight path.

    (x - x') * mean_k grad(x' + alpha_k (x - x')), alpha_k from :func:`riemann_alphas`: the
    right rule by default (the IG paper's formula); ``rule="original"`` is what the code Adebayo et
    al. used computed (``steps`` evenly spaced points from 0 to 1, endpoints included, each weighted
    1/steps). The B x steps path points are built chunk by chunk, so at most ``batch_size`` of them
    exist at once.
    """
    base = resolve_baseline(x, baseline)
    alphas = riemann_alphas(steps, rule, x)
    delta = x - base
    summed = torch.zeros_like(x)
    for s in batch_slices(x.shape[0] * steps, batch_size):
        flat = torch.arange(s.start, s.stop, device=x.device)
        example, step = flat // steps, flat % steps
        alpha = alphas[step].view(-1, *([1] * (x.dim() - 1)))
        points = base[example] + alpha * delta[example]
        summed.index_add_(0, example, _target_logit_gradients(model, points, target[example]))
    return delta * summed / steps
