"""Modified-ReLU backpropagation: guided backprop and deconvnet, via Captum.

Captum hooks every ``nn.ReLU`` module (the project's models have one per ReLU, none
in-place or reused) and removes the hooks when it is done; the registry-wide tests check
that none is left behind.
"""

from __future__ import annotations

import torch
from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from saliency_sanity.methods.common import chunked, quiet_captum
from saliency_sanity.methods.registry import register
from saliency_sanity.methods.reuse import memoize


def _modified_relu(
    explainer: GuidedBackprop | Deconvolution, x: torch.Tensor, target: torch.Tensor, batch_size: int | None
) -> torch.Tensor:
    def attribute(xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return explainer.attribute(xs.detach().requires_grad_(), target=ts)

    with quiet_captum():
        return chunked(attribute, batch_size, x, target)


@register("guided_backprop")
def guided_backprop(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Guided backprop (Springenberg et al. 2015): only positive gradients pass active ReLUs."""
    # Within shared work (a runner stage) Guided Grad-CAM reuses this map; batch_size only chunks.
    return memoize(
        ("guided_backprop", model, x, target),
        lambda: _modified_relu(GuidedBackprop(model), x, target, batch_size),
        clone=True,
    )


@register("deconvnet")
def deconvnet(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Deconvnet (Zeiler & Fergus 2014): ReLUs pass only positive gradients, whatever the input."""
    return _modified_relu(Deconvolution(model), x, target, batch_size)
