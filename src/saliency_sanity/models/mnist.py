"""The paper's MNIST / Fashion-MNIST models: a CNN and an MLP, each a model registry entry."""

from __future__ import annotations

import torch
from torch import nn

from saliency_sanity.models.base import SanityModel, truncated_normal_
from saliency_sanity.models.registry import register_model

MNIST_DATASETS = ("mnist", "fashion-mnist")
MNIST_PREPROCESSING = "pixels / 255, in [0, 1] (the paper's inputs)"


@register_model("cnn", datasets=MNIST_DATASETS, input_shape=(1, 28, 28), preprocessing=MNIST_PREPROCESSING)
class MnistCNN(SanityModel):
    """conv5x5x32 - pool - conv5x5x64 - pool - fc1024 - fc10, ReLU (paper's MNIST/Fashion CNN).

    Initializer: truncated normal (sigma 0.1) weights and constant 0.1 biases.
    """

    arch = "cnn"
    block_names = ("logits", "fc", "conv2", "conv1")

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64 * (image_size // 4) ** 2, 1024)
        self.relu3 = nn.ReLU()
        self.logits = nn.Linear(1024, num_classes)
        self.gradcam_layer = self.relu2
        self.reset_parameters()

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        module = self.block(name)
        with torch.no_grad():
            truncated_normal_(module.weight, 0.1, generator)
            module.bias.fill_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc(self.flatten(x)))
        return self.logits(x)


@register_model("mlp", datasets=MNIST_DATASETS, input_shape=(1, 28, 28), preprocessing=MNIST_PREPROCESSING)
class MnistMLP(SanityModel):
    """784-2500-1500-500-10 with ReLU (paper's MNIST MLP).

    Initializer: truncated normal with sigma 2/sqrt(fan_in), zero biases.
    """

    arch = "mlp"
    block_names = ("logits", "fc3", "fc2", "fc1")

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 2500)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(2500, 1500)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(1500, 500)
        self.relu3 = nn.ReLU()
        self.logits = nn.Linear(500, num_classes)
        self.gradcam_layer = None
        self.reset_parameters()

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        module = self.block(name)
        with torch.no_grad():
            truncated_normal_(module.weight, 2.0 / module.in_features**0.5, generator)
            module.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        x = self.relu2(self.fc2(x))
        x = self.relu3(self.fc3(x))
        return self.logits(x)
