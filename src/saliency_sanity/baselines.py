"""Baselines (references) for path-attribution methods such as Integrated Gradients.

A baseline lives in the model's *input space*: the same preprocessing as x. The paper's
choice, the zero baseline, is therefore black for MNIST inputs in [0, 1] but mid-grey for
inputs scaled to [-1, 1] (Inception); figures must say which input scaling was used.
"""

from __future__ import annotations

import torch


def zero_baseline(x: torch.Tensor) -> torch.Tensor:
    """All-zeros baseline of x's shape, dtype and device (Adebayo et al.'s IG baseline)."""
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
