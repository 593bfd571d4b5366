"""The CAM family on one template: CAM, Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

:func:`class_activation_maps` owns what every variant shares: the hook on the model's
``gradcam_layer`` (activations A, B x K x ...), the backward pass for the target logit where a
variant needs the gradients, the weighted sum over channels, the ReLU, the resize to the input
(bilinear; linear for 1-D inputs), the division by each map's maximum and the tiling over the input
channels, as Adebayo et al. display Grad-CAM. A variant is one function registered with
:func:`register_cam` that computes the channel weights (B x K) from the activations and gradients.
Dividing after resizing rather than before only changes a per-image constant and makes the maximum
exactly 1. A map that is zero everywhere stays zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from saliency_sanity.methods.common import chunked
from saliency_sanity.methods.guided import guided_backprop
from saliency_sanity.methods.registry import register
from saliency_sanity.methods.reuse import memoize

INTERPOLATION = {3: "linear", 4: "bilinear"}


@dataclass(frozen=True)
class CamInputs:
    """What a variant's channel weights may use: the layer's activations and, where the variant asks
    for them, the target logit's gradients w.r.t. them (same shape), with the model and the targets."""

    model: nn.Module
    activations: torch.Tensor
    gradients: torch.Tensor | None
    target: torch.Tensor


ChannelWeights = Callable[[CamInputs], torch.Tensor]


def _resize(cam: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if cam.dim() not in INTERPOLATION:
        raise ValueError(f"CAM methods need (B, C, L) or (B, C, H, W) inputs, got {cam.dim()} dimensions")
    return F.interpolate(cam, size=tuple(size), mode=INTERPOLATION[cam.dim()], align_corners=False)


def _layer_inputs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, gradients: bool) -> CamInputs:
    captured: list[torch.Tensor] = []
    handle = model.gradcam_layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.set_grad_enabled(gradients):
            logits = model(x.detach())
    finally:
        handle.remove()
    (activations,) = captured
    grads = None
    if gradients:
        (grads,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), activations)
    return CamInputs(model, activations.detach(), grads, target)


def _cam_batch(channel_weights: ChannelWeights, gradients: bool, model: nn.Module, x: torch.Tensor,
               target: torch.Tensor) -> torch.Tensor:
    inputs = _layer_inputs(model, x, target, gradients)
    weights = channel_weights(inputs)
    activations = inputs.activations
    cam = (weights.view(*weights.shape, *([1] * (activations.dim() - 2))) * activations).sum(1, keepdim=True).relu()
    cam = _resize(cam, x.shape[2:])
    peak = cam.flatten(1).amax(dim=1).view(-1, *([1] * (cam.dim() - 1)))
    cam = cam / peak.clamp_min(torch.finfo(cam.dtype).tiny)
    return cam.repeat(1, x.shape[1], *([1] * (cam.dim() - 2)))


def class_activation_maps(
    name: str, channel_weights: ChannelWeights, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
    gradients: bool = True, batch_size: int | None = None,
) -> torch.Tensor:
    """Maps of ReLU(sum_k w_k A_k), resized to x, in [0, 1] per image; ``channel_weights`` gives w (B x K).

    Within shared work (a runner stage) a variant's map is computed once, so Guided Grad-CAM reuses
    Grad-CAM's; ``batch_size`` only chunks.
    """
    def compute() -> torch.Tensor:
        step = lambda xs, ts: _cam_batch(channel_weights, gradients, model, xs, ts)  # noqa: E731
        return chunked(step, batch_size, x, target)

    return memoize((name, model, model.gradcam_layer, x, target), compute, clone=True)


def register_cam(name: str, *, gradients: bool = True, requires: tuple[str, ...] = ("gradcam_layer",)
                 ) -> Callable[[ChannelWeights], ChannelWeights]:
    """Register the CAM variant whose channel weights ``fn(inputs) -> (B, K)`` computes as method ``name``.

    ``gradients``: whether the variant needs the target logit's gradients (a backward pass);
    ``requires``: the model attributes it needs besides (a model without them skips the method).
    """

    def decorator(fn: ChannelWeights) -> ChannelWeights:
        def method(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                   batch_size: int | None = None) -> torch.Tensor:
            return class_activation_maps(name, fn, model, x, target, gradients=gradients, batch_size=batch_size)

        method.__doc__ = fn.__doc__
        register(name, requires=tuple(dict.fromkeys(("gradcam_layer", *requires))))(method)
        return fn

    return decorator


def _spatial_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).sum(2)


@register_cam("gradcam")
def gradcam(inputs: CamInputs) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient; map in [0, 1] per image."""
    return inputs.gradients.flatten(2).mean(2)


@register("guided_gradcam", requires=("gradcam_layer",))
def guided_gradcam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop times the Grad-CAM map (Selvaraju et al. 2017).

    Within shared work both factors come from the memo when those methods already ran.
    """
    return guided_backprop(model, x, target, batch_size=batch_size) * class_activation_maps(
        "gradcam", gradcam, model, x, target, batch_size=batch_size)


@register_cam("gradcam_plus_plus")
def gradcam_plus_plus(inputs: CamInputs) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018): channels weighted by their positive gradients, each position
    by alpha = g^2 / (2 g^2 + sum_ab A * g^3) (the closed form for an exponential of the logit)."""
    g, a = inputs.gradients, inputs.activations
    squared, cubed = g.pow(2), g.pow(3)
    total = _spatial_sum(a).view(*a.shape[:2], *([1] * (a.dim() - 2)))
    denominator = 2 * squared + total * cubed
    alpha = torch.where(denominator != 0, squared / torch.where(denominator != 0, denominator, torch.ones_like(g)),
                        torch.zeros_like(g))
    return _spatial_sum(alpha * g.relu())


@register_cam("cam", gradients=False, requires=("cam_classifier",))
def cam(inputs: CamInputs) -> torch.Tensor:
    """CAM (Zhou et al. 2016): channels weighted by the target's row of the linear layer after global average
    pooling (models with that head: Inception v3, EfficientNet; skipped elsewhere)."""
    return inputs.model.cam_classifier.weight[inputs.target].to(inputs.activations.dtype)
