"""The baseline registry: references for path-attribution methods (Integrated Gradients, DeepLIFT).

A baseline is one decorated function ``fn(x, context) -> Tensor`` of x's shape, in the model's
*input space* (after preprocessing): the paper's zero baseline is black for MNIST inputs in
[0, 1] but the ImageNet mean colour for normalized ImageNet inputs. The config names one per path
method (``methods: {integrated_gradients: {baseline: zero}}``, default ``zero``); a method
receives the tensor as its ``baseline`` argument.
"""

from __future__ import annotations

from typing import Callable

import torch

from saliency_sanity.context import Context
from saliency_sanity.registry import Registry

BaselineFn = Callable[[torch.Tensor, Context], torch.Tensor]
DEFAULT_BASELINE = "zero"

BASELINES: Registry[BaselineFn] = Registry("baseline")


def register_baseline(name: str) -> Callable[[BaselineFn], BaselineFn]:
    """Register ``fn(x, context)`` as baseline ``name``; returns ``fn`` unchanged."""

    def decorator(fn: BaselineFn) -> BaselineFn:
        BASELINES.add(name, fn)
        return fn

    return decorator


def make_baseline(name: str, x: torch.Tensor, context: Context, config_key: str | None = None) -> torch.Tensor:
    """The baseline ``name`` for inputs x, checked to have x's shape, dtype and device."""
    baseline = BASELINES.get_entry(name, config_key)(x, context)
    if baseline.shape != x.shape or baseline.device != x.device or baseline.dtype != x.dtype:
        raise RuntimeError(f"baseline {name!r} returned {tuple(baseline.shape)} {baseline.dtype} on {baseline.device} "
                           f"for inputs {tuple(x.shape)} {x.dtype} on {x.device}")
    return baseline


@register_baseline("zero")
def zero_baseline(x: torch.Tensor, context: Context | None = None) -> torch.Tensor:
    """All zeros in input space (Adebayo et al.'s IG baseline)."""
    return torch.zeros_like(x)


def resolve_baseline(x: torch.Tensor, baseline: torch.Tensor | None) -> torch.Tensor:
    """The baseline for each example of x: None means zeros; a tensor is broadcast to x.

    A single baseline of shape (C, H, W) or (1, C, H, W) is shared by every example;
    a (B, C, H, W) tensor gives one baseline per example.
    """
    if baseline is None:
        return zero_baseline(x)
    baseline = torch.as_tensor(baseline).detach()
    if baseline.device != x.device:
        raise ValueError(f"baseline is on {baseline.device} but x is on {x.device}; move it with .to(x.device)")
    try:
        return torch.broadcast_to(baseline.to(x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to x's shape {tuple(x.shape)}; "
            "pass one baseline per example or one shared by all"
        ) from None
