"""Completeness (summation-to-delta): how far a path method's map is from summing to f(x) - f(x').

Integrated Gradients' maps sum to the change of the target logit from the baseline x' to the
input x only in the limit of infinitely many path steps; DeepLIFT's multipliers make the sum
exact by construction. :func:`completeness_error` is the relative error
``|sum phi - (f(x) - f(x'))| / |f(x) - f(x')|`` per example: the runner records it for every
map of a method registered with ``completeness=True``, and adaptive IG refines its path until it
is under a tolerance.
"""

from __future__ import annotations

import torch
from torch import nn


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The model's logits without gradients, in chunks of ``batch_size`` so memory stays bounded."""
    chunks = x.split(batch_size) if batch_size else (x,)
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in chunks])


def target_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each example's logit of its target class, (B,)."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def completeness_error(maps: torch.Tensor, f_x: torch.Tensor, f_baseline: torch.Tensor) -> torch.Tensor:
    """``|sum phi - (f(x) - f(x'))| / |f(x) - f(x')|`` per example, in float64.

    Where f(x) = f(x') the error is 0 for a map that sums to 0 and infinite otherwise.
    """
    delta = (f_x - f_baseline).double()
    gap = (maps.flatten(1).double().sum(1) - delta).abs()
    return torch.where(delta != 0, gap / delta.abs(), torch.where(gap == 0, 0.0, torch.inf))
