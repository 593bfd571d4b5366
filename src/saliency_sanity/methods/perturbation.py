"""Perturbation methods: occlusion and meaningful perturbation, batched over many perturbed copies.

Both explain the target logit by changing the input and looking at the output, not by
backpropagating through it, so the randomization tests ask of them whether the model, not the input,
makes the map. Neither loops over pixels in Python: occlusion evaluates ``batch_size`` occluded
copies (images x window positions) per pass, meaningful perturbation optimizes every image's mask at
once.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from saliency_sanity.baselines import gaussian_blur
from saliency_sanity.methods.common import batch_slices, chunked
from saliency_sanity.methods.completeness import logits_of
from saliency_sanity.methods.registry import register

INTERPOLATION = {1: "linear", 2: "bilinear"}


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where the windows along one axis start: every ``stride`` pixels, plus one flush with the far edge
    when the stride does not land there, so that every pixel is occluded at least once."""
    if not 1 <= window <= size or stride < 1:
        raise ValueError(f"occlusion needs 1 <= window <= {size} (the input's side) and stride >= 1, "
                         f"got window {window}, stride {stride}")
    starts = list(range(0, size - window + 1, stride))
    return starts if starts[-1] == size - window else [*starts, size - window]


def occlusion_masks(shape: torch.Size, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """(positions, *shape) booleans: each window position's occluded pixels over the spatial ``shape``."""
    masks = []
    for corner in itertools.product(*(window_starts(n, window, stride) for n in shape)):
        mask = torch.zeros(shape, dtype=torch.bool, device=device)
        mask[tuple(slice(c, c + window) for c in corner)] = True
        masks.append(mask)
    return torch.stack(masks)


def _fill_values(x: torch.Tensor, fill: float | str) -> torch.Tensor:
    if fill == "mean":  # each image's own mean colour
        return x.flatten(2).mean(2).view(*x.shape[:2], *([1] * (x.dim() - 2))).expand_as(x)
    if isinstance(fill, str):
        raise ValueError(f"occlusion fill must be a number or 'mean', got {fill!r}")
    return torch.full_like(x, float(fill))


@register("occlusion")
def occlusion(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, window: int = 4, stride: int = 2,
    fill: float | str = 0.0, batch_size: int | None = None,
) -> torch.Tensor:
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a window is filled, averaged
    over the windows covering each pixel.

    Square windows of ``window`` pixels every ``stride`` pixels (:func:`window_starts`), over all channels,
    filled with ``fill`` (a value, or ``mean``: the image's mean colour); ``batch_size`` occluded copies per
    pass. Where the windows tile the input, the maps are Captum's ``Occlusion`` (tested).
    """
    masks = occlusion_masks(x.shape[2:], window, stride, x.device)
    counts = masks.sum(0).to(x.dtype)
    fills = _fill_values(x, fill)
    original = logits_of(model, x, batch_size).gather(1, target.view(-1, 1)).squeeze(1)
    positions = masks.shape[0]
    summed = torch.zeros(x.shape[0], *x.shape[2:], device=x.device, dtype=x.dtype)
    with torch.no_grad():
        for pairs in batch_slices(x.shape[0] * positions, batch_size):
            flat = torch.arange(pairs.start, pairs.stop, device=x.device)
            image, position = flat // positions, flat % positions
            window_mask = masks[position].unsqueeze(1)
            occluded = torch.where(window_mask, fills[image], x[image])
            drop = original[image] - model(occluded).gather(1, target[image].view(-1, 1)).squeeze(1)
            summed.index_add_(0, image, drop.view(-1, *([1] * (x.dim() - 2))) * masks[position].to(x.dtype))
    return (summed / counts).unsqueeze(1).expand_as(x).contiguous()


def total_variation(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """(B,) mean of |difference of neighbours|^beta over every spatial axis of (B, 1, ...) masks."""
    dims = tuple(range(1, mask.dim()))
    return sum(mask.diff(dim=axis).abs().pow(beta).mean(dims) for axis in range(2, mask.dim()))


def _upsample(mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(mask, size=tuple(size), mode=INTERPOLATION[mask.dim() - 2], align_corners=False)


def _perturbation_masks(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, iterations: int, lr: float,
                        l1: float, tv: float, tv_beta: float, mask_size: int, blur_sigma: float) -> torch.Tensor:
    blurred = gaussian_blur(x, blur_sigma)
    mask = torch.ones(x.shape[0], 1, *([mask_size] * (x.dim() - 2)), device=x.device, dtype=x.dtype,
                      requires_grad=True)
    optimizer = torch.optim.Adam([mask], lr=lr)
    for _ in range(iterations):
        with torch.enable_grad():
            kept = _upsample(mask, x.shape[2:])
            perturbed = x * kept + blurred * (1 - kept)
            probability = model(perturbed).softmax(1).gather(1, target.view(-1, 1)).squeeze(1)
            dims = tuple(range(1, mask.dim()))
            loss = (l1 * (1 - mask).abs().mean(dims) + tv * total_variation(mask, tv_beta) + probability).sum()
            (mask.grad,) = torch.autograd.grad(loss, mask)
        optimizer.step()
        with torch.no_grad():
            mask.clamp_(0.0, 1.0)
    return 1 - _upsample(mask.detach(), x.shape[2:])


@register("meaningful_perturbation")
def meaningful_perturbation(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, iterations: int = 100, lr: float = 0.1,
    l1: float = 0.08, tv: float = 0.2, tv_beta: float = 3.0, mask_size: int = 28, blur_sigma: float = 10.0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Meaningful perturbation (Fong & Vedaldi 2017): the smallest, smoothest region whose blurring deletes
    the target class; map = 1 - mask, in [0, 1].

    A ``mask_size`` mask per image (1: keep, 0: replace by the input blurred with ``blur_sigma`` pixels),
    upsampled bilinearly, starts at 1 and takes ``iterations`` Adam steps (``lr``) on
    ``l1 * mean|1 - m| + tv * mean|grad m|^tv_beta + softmax probability of the target``, clamped to [0, 1]
    after each. Deterministic: no noise is drawn. Fong & Vedaldi: 500 steps, lr 0.1, a 28 x 28 mask,
    blur sigma 10 at 224 px, lambda1 1e-4 on a sum over the mask (0.08 as a mean over 28 x 28); the TV
    weight 0.2 on means is the common PyTorch reimplementations' (their lambda2 1e-2 is on a sum of
    |grad m|^3 with the gradient's norm). A saturated softmax (p > 0.9999, common on MNIST) has almost
    no gradient, the L1 term wins and the map stays empty: a property of the objective.
    Every image of a ``batch_size`` chunk is optimized at once (its own mask; Adam is per element).
    """
    if iterations < 1 or mask_size < 1:
        raise ValueError(f"meaningful_perturbation needs iterations >= 1 and mask_size >= 1, got {iterations}, {mask_size}")
    kept = chunked(lambda xs, ts: _perturbation_masks(model, xs, ts, iterations=iterations, lr=lr, l1=l1, tv=tv,
                                                      tv_beta=tv_beta, mask_size=mask_size, blur_sigma=blur_sigma),
                   batch_size, x, target)
    return kept.expand_as(x).contiguous()
