"""The paper's models, each exposing its randomization blocks from the logits down.

Every ReLU is its own ``nn.ReLU`` module (never in-place, never reused) so that hook-based
methods (guided backprop, deconvnet, DeepLIFT) really apply their rules. Each model knows how
to re-initialize one of its blocks with its own initializer, which is what the cascading and
independent randomization tests need.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

import torch
from torch import nn


def truncated_normal_(tensor: torch.Tensor, std: float, generator: torch.Generator | None):
    """Normal(0, std) truncated at two standard deviations, as TensorFlow's initializer."""
    return nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std, generator=generator)


class SanityModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class: a classifier with named randomization blocks.

    ``block_names`` lists blocks from the output (logits) down to the input; ``init_block``
    re-initializes one block's trainable parameters with the model's own initializer.
    ``gradcam_layer`` is the module whose activations Grad-CAM uses, or None where the
    architecture has no spatial feature maps.
    """

    arch: str = ""
    block_names: tuple[str, ...] = ()
    # Set in __init__, never as a class default: nn.Module keeps submodules in _modules, so a
    # class-level None would shadow an assigned layer (getattr finds the class attribute first).
    gradcam_layer: nn.Module | None

    def block(self, name: str) -> nn.Module:
        if name not in self.block_names:
            raise KeyError(f"{type(self).__name__} has no block {name!r}; blocks: {self.block_names}")
        return getattr(self, name)

    @abc.abstractmethod
    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        """Re-initialize block ``name`` with the architecture's own initializer."""

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialize every block (a freshly built, untrained model)."""
        for name in self.block_names:
            self.init_block(name, generator)


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


ARCHITECTURES: dict[str, type[SanityModel]] = {"cnn": MnistCNN, "mlp": MnistMLP}
IMAGENET_ARCHITECTURES = ("inception_v3",)  # defined in saliency_sanity.inception (torchvision-based)


def architecture(arch: str) -> type[SanityModel]:
    """The model class of an architecture name."""
    if arch in IMAGENET_ARCHITECTURES:
        from saliency_sanity.inception import InceptionV3  # imported on demand: it imports this module

        return InceptionV3
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        known = sorted([*ARCHITECTURES, *IMAGENET_ARCHITECTURES])
        raise ValueError(f"unknown architecture {arch!r}; choose one of {known}") from None


def build_model(arch: str, seed: int | None = None) -> SanityModel:
    """A freshly initialized model; with ``seed`` its initialization is reproducible."""
    cls = architecture(arch)
    model = cls()
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


def save_checkpoint(model: SanityModel, path: Path, record: dict) -> None:
    """Write ``<name>.pt`` (state dict + arch) and ``<name>.json`` (the record), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_pt = path.with_name(path.name + ".tmp")
    torch.save({"arch": model.arch, "state_dict": model.state_dict()}, tmp_pt)
    json_path = path.with_suffix(".json")
    tmp_json = json_path.with_name(json_path.name + ".tmp")
    tmp_json.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp_pt.replace(path)
    tmp_json.replace(json_path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> SanityModel:
    """Load a model written by :func:`save_checkpoint`, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint {path} does not exist; train it first (snakemake {path})")
    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_model(payload["arch"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
