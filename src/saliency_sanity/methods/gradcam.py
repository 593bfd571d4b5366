"""Grad-CAM and Guided Grad-CAM on the model's ``gradcam_layer``.

Grad-CAM as in Adebayo et al.: ReLU of the gradient-weighted activation map, resized
(bilinear; linear for 1-D inputs) to the input, divided by its maximum per image, tiled over
the input channels. Dividing after resizing rather than before only changes a per-image
constant and makes the maximum exactly 1. A map that is zero everywhere stays zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from saliency_sanity.methods.common import chunked
from saliency_sanity.methods.guided import guided_backprop
from saliency_sanity.methods.registry import register
from saliency_sanity.methods.reuse import memoize

INTERPOLATION = {3: "linear", 4: "bilinear"}


def _resize(cam: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if cam.dim() not in INTERPOLATION:
        raise ValueError(f"Grad-CAM needs (B, C, L) or (B, C, H, W) inputs, got {cam.dim()} dimensions")
    return F.interpolate(cam, size=tuple(size), mode=INTERPOLATION[cam.dim()], align_corners=False)


def _gradcam_batch(explainer: LayerGradCam, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    cam = explainer.attribute(x.detach().requires_grad_(), target=target, relu_attributions=True)
    cam = _resize(cam, x.shape[2:])
    peak = cam.flatten(1).amax(dim=1).view(-1, *([1] * (cam.dim() - 1)))
    cam = cam / peak.clamp_min(torch.finfo(cam.dtype).tiny)
    return cam.repeat(1, x.shape[1], *([1] * (cam.dim() - 2)))


@register("gradcam", requires=("gradcam_layer",))
def gradcam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017), normalized to [0, 1] per image."""

    def compute() -> torch.Tensor:
        explainer = LayerGradCam(model, model.gradcam_layer)
        return chunked(lambda xs, ts: _gradcam_batch(explainer, xs, ts), batch_size, x, target)

    # Within shared work (a runner stage) Guided Grad-CAM reuses this map; batch_size only chunks.
    return memoize(("gradcam", model, model.gradcam_layer, x, target), compute, clone=True)


@register("guided_gradcam", requires=("gradcam_layer",))
def guided_gradcam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop times the Grad-CAM map (Selvaraju et al. 2017).

    Within shared work both factors come from the memo when those methods already ran.
    """
    return guided_backprop(model, x, target, batch_size=batch_size) * gradcam(
        model, x, target, batch_size=batch_size
    )
