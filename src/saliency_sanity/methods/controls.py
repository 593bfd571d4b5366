"""Model-free controls: edge detectors and random noise (Adebayo et al., Figure 1).

They ignore the model and the target; a saliency method whose maps look like these is
explaining the input, not the model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import skimage.feature
import skimage.filters
import torch
from torch import nn

from saliency_sanity.methods.common import check_generator
from saliency_sanity.methods.registry import register


def _per_channel(x: torch.Tensor, image_filter: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply a scikit-image filter to every channel of every example, back on x's device."""
    channels = x.detach().to("cpu", torch.float64).numpy()
    out = np.stack([[image_filter(channel) for channel in example] for example in channels])
    return torch.from_numpy(out.astype(np.float64)).to(device=x.device, dtype=x.dtype)


@register("sobel", model_free=True)
def sobel(model: nn.Module | None, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each input channel (model-free edge control)."""
    return _per_channel(x, skimage.filters.sobel)


@register("canny", model_free=True)
def canny(model: nn.Module | None, x: torch.Tensor, target: torch.Tensor, *, sigma: float = 1.0) -> torch.Tensor:
    """Canny edges (0/1) of each input channel, Gaussian smoothing ``sigma`` (model-free control)."""
    if x.dim() != 4:
        raise ValueError(f"canny needs images (B, C, H, W), got shape {tuple(x.shape)}; use sobel for 1-D inputs")
    return _per_channel(x, lambda channel: skimage.feature.canny(channel, sigma=sigma))


@register("random_noise", model_free=True, stochastic=True)
def random_noise(
    model: nn.Module | None, x: torch.Tensor, target: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Standard normal noise of x's shape, drawn on x's device (model-free random control)."""
    check_generator(generator, x.device)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
