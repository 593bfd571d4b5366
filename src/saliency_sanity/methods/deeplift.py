"""DeepLIFT with the Rescale rule (Shrikumar et al. 2017), implemented here.

Why not Captum's ``DeepLift``: in Captum 0.9 a nonlinearity that feeds another hooked
module directly (ReLU -> MaxPool, as in the paper's CNN) reads a stale output gradient, and
summation-to-delta fails by several percent (captum issues #1104, #1276). This version has no
tensor hooks: the input and the baseline run through the model as one batch, and a forward
hook on each nonlinear module replaces its output for the input half by
``y + m * (z - stop_grad(z))``: the same value, with the DeepLIFT multiplier ``m`` as its
derivative. Backpropagating the target logit then chains multipliers through the linear
layers, and ``multiplier * (x - x')`` sums to f(x) - f(x') (summation-to-delta).

Rules: Rescale ``m = dy/dz`` (differences from the reference) for elementwise
nonlinearities, the ordinary gradient where ``|dz|`` is below ``EPS``. Max-pooling routes each
window's ``dy`` to the input that attains the larger of the two maxima (the input's argmax
when its max grew, the reference's otherwise), which keeps summation-to-delta exact;
Shrikumar et al.'s own code used the gradient there, which does not.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from saliency_sanity.baselines import resolve_baseline
from saliency_sanity.methods.common import chunked
from saliency_sanity.methods.registry import register

EPS = 1e-10
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU)
MAX_POOLS = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}


def _with_derivative(y: torch.Tensor, z: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """y's value with derivative ``slope`` w.r.t. z (elementwise, same shapes)."""
    return y.detach() + slope.detach() * (z - z.detach())


def _rescale_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    if getattr(module, "inplace", False):
        raise ValueError(f"DeepLIFT needs each nonlinearity's input, but {module} is in-place; use inplace=False")
    (z_x, z_r), (y_x, y_r) = inputs[0].chunk(2), output.chunk(2)
    dz, dy = (z_x - z_r).detach(), (y_x - y_r).detach()
    changed = dz.abs() > EPS
    slope = dy / torch.where(changed, dz, torch.ones_like(dz))
    return torch.cat([torch.where(changed, _with_derivative(y_x, z_x, slope), y_x), y_r])


def _maxpool_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    pool = partial(
        MAX_POOLS[type(module)], kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=module.dilation, ceil_mode=module.ceil_mode, return_indices=True,
    )
    z_x, z_r = inputs[0].chunk(2)
    (y_x, idx_x), (y_r, idx_r) = pool(z_x), pool(z_r.detach())
    dy = (y_x - y_r).detach()
    winner = torch.where(dy >= 0, idx_x, idx_r).flatten(2)
    z_at = z_x.flatten(2).gather(2, winner).view_as(y_x)
    dz_at = (z_x - z_r).detach().flatten(2).gather(2, winner).view_as(y_x)
    changed = dz_at.abs() > EPS  # |dz_at| >= |dy| by the choice of winner
    slope = torch.where(changed, dy / torch.where(changed, dz_at, torch.ones_like(dz_at)), torch.ones_like(dy))
    return torch.cat([y_x.detach() + slope * (z_at - z_at.detach()), output.chunk(2)[1]])


def _hook_for(module: nn.Module):
    if isinstance(module, ELEMENTWISE):
        return _rescale_hook
    if type(module) in MAX_POOLS:
        return _maxpool_hook
    return None


def _multipliers(model: nn.Module, x: torch.Tensor, target: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        logits = model(torch.cat([inputs, base]))
        selected = logits[: x.shape[0]].gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, inputs)
    return grad


@register("deeplift_rescale", needs_baseline=True, completeness=True)
def deeplift_rescale(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    baseline: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """DeepLIFT-Rescale contributions to the target logit w.r.t. a baseline (zeros).

    Input and baseline run as one batch, so chunks hold ``batch_size // 2`` examples.
    Nonlinearities must be modules (not functional calls) to get their rule.
    """
    base = resolve_baseline(x, baseline)
    chunk = None if batch_size is None else max(1, batch_size // 2)
    handles = [m.register_forward_hook(hook) for m in model.modules() if (hook := _hook_for(m)) is not None]
    try:
        multipliers = chunked(partial(_multipliers, model), chunk, x, target, base)
    finally:
        for handle in handles:
            handle.remove()
    return multipliers * (x - base)
