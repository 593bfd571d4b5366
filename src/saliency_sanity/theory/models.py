"""The two small models of the paper's theory section, as :class:`SanityModel` classifiers.

Both return logits of shape (batch, classes), so every registry method applies to them
unchanged; their one randomization block re-initializes the weights with the model's own
initializer.
"""

from __future__ import annotations

import torch
from torch import nn

from saliency_sanity.models import SanityModel, truncated_normal_


class LinearModel(SanityModel):
    """Softmax-linear classifier: logits = W flatten(x) + b.

    Initializer: truncated normal with sigma 1/sqrt(fan_in) weights, zero biases (the scale of
    the MLP's initializer, without its factor 2).
    """

    arch = "linear"
    block_names = ("logits",)

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.logits = nn.Linear(in_features, num_classes)
        self.gradcam_layer = None
        self.reset_parameters()

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        module = self.block(name)
        with torch.no_grad():
            truncated_normal_(module.weight, 1.0 / module.in_features**0.5, generator)
            module.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.flatten(x))


class ConvSumModel(SanityModel):
    """One output: scale * sum_i sum_j ReLU(w_j . x_i) - offset, over the valid windows x_i.

    ``x`` is a batch of 1-D signals (B, C, L); the filters w_j (``conv``, no bias) have
    ``width`` taps. ``scale`` is a fixed positive constant (1 is the paper's model; training uses
    1 / n_filters so the output does not grow with the number of filters): it multiplies every
    attribution and leaves every normalized map unchanged. ``offset`` is a learned constant (the
    decision threshold of the binary task) with no effect on any attribution. Initializer:
    filters i.i.d. normal with sigma 1/sqrt(C * width), offset 0.
    """

    arch = "convsum"
    block_names = ("conv",)

    def __init__(self, n_filters: int, width: int, in_channels: int = 1, scale: float = 1.0):
        super().__init__()
        if n_filters < 1 or width < 1:
            raise ValueError(f"need n_filters >= 1 and width >= 1, got {n_filters} and {width}")
        if not scale > 0:
            raise ValueError(f"scale must be positive (a negative one flips guided backprop), got {scale}")
        self.conv = nn.Conv1d(in_channels, n_filters, width, bias=False)
        self.relu = nn.ReLU()
        self.offset = nn.Parameter(torch.zeros(()))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.gradcam_layer = None
        self.reset_parameters()

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        module = self.block(name)
        with torch.no_grad():
            fan_in = module.in_channels * module.kernel_size[0]
            module.weight.normal_(0.0, fan_in**-0.5, generator=generator)

    @property
    def filters(self) -> torch.Tensor:
        """The filters as a (n_filters, C, width) tensor."""
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] < self.conv.kernel_size[0]:
            raise ValueError(
                f"ConvSumModel needs signals (B, C, L) with L >= width {self.conv.kernel_size[0]}, got {tuple(x.shape)}"
            )
        pooled = self.relu(self.conv(x)).sum(dim=(1, 2))
        return (self.scale * pooled - self.offset).unsqueeze(1)
