"""The interface every model of the registry implements: named randomization blocks, top-down.

Every ReLU is its own ``nn.ReLU`` module (never in-place, never reused) so that hook-based
methods (guided backprop, deconvnet, DeepLIFT) really apply their rules; a capped ReLU is a
:class:`ReLU6` module, which those rules treat as a ReLU. Each model knows how
to re-initialize one of its blocks with its own initializer, which is what the cascading and
independent randomization tests need.
"""

from __future__ import annotations

import abc

import torch
from torch import nn


def truncated_normal_(tensor: torch.Tensor, std: float, generator: torch.Generator | None):
    """Normal(0, std) truncated at two standard deviations, as TensorFlow's initializer."""
    return nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std, generator=generator)


def init_batchnorm_(module: nn.BatchNorm2d, reset_statistics: bool) -> None:
    """BatchNorm re-initialized as the papers' code did: scale 1, offset 0; its running statistics
    are kept (the original's randomization) unless ``reset_statistics``."""
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.bias.zero_()
    if reset_statistics:
        module.reset_running_stats()


GRANULARITIES = ("blocks", "modules")  # what a randomization test re-initializes at each stage


def has_own_parameters(module: nn.Module) -> bool:
    """Whether ``module`` holds parameters itself (not only through its children): a unit of ``modules``
    granularity."""
    return next(module.parameters(recurse=False), None) is not None


class ReLU6(nn.ReLU):
    """min(max(z, 0), 6) as a ReLU module, never in-place.

    A subclass of ``nn.ReLU`` so that every rule written for ReLU modules applies to it: Captum's
    guided backprop passes the positive part of the ReLU6 gradient (zero below 0 and above 6),
    its deconvnet the positive part of the output gradient whatever the input, and DeepLIFT's
    Rescale rule divides the output difference by the input difference. Tests check each
    against hand-computed values.
    """

    def __init__(self) -> None:
        super().__init__(inplace=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.clamp(z, 0.0, 6.0)

    def extra_repr(self) -> str:
        return ""


class SanityModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class: a classifier with named randomization blocks.

    ``block_names`` lists blocks from the output (logits) down to the input; ``init_block``
    re-initializes one block's trainable parameters with the model's own initializer.
    ``gradcam_layer`` is the module whose activations Grad-CAM uses, or None where the
    architecture has no spatial feature maps. ``cam_classifier`` is the linear layer that follows
    global average pooling of those activations, where the head is just that (CAM needs it).
    """

    arch: str = ""
    block_names: tuple[str, ...] = ()
    # Set in __init__, never as a class default: nn.Module keeps submodules in _modules, so a
    # class-level None would shadow an assigned layer (getattr finds the class attribute first).
    gradcam_layer: nn.Module | None

    @property
    def cam_classifier(self) -> nn.Module | None:
        return None

    def block(self, name: str) -> nn.Module:
        """The submodule of block ``name`` (a dotted path below the model, e.g. ``blocks.6.0``)."""
        if name not in self.block_names:
            raise KeyError(f"{type(self).__name__} has no block {name!r}; blocks: {self.block_names}")
        return self.get_submodule(name)

    @abc.abstractmethod
    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        """Re-initialize block ``name`` with the architecture's own initializer."""

    def init_module(self, module: nn.Module, generator: torch.Generator | None = None) -> None:
        """Re-initialize one submodule inside a block with the architecture's own initializer; a model whose
        blocks hold more than one parameterized module overrides this to randomize module by module."""
        raise ValueError(f"{type(self).__name__} re-initializes whole blocks only; use granularity "
                         "'blocks', or a re-initialization law other than 'model'")

    def randomization_units(self, granularity: str = "blocks") -> tuple[str, ...]:
        """What a randomization test re-initializes, from the logits down: the declared blocks, or (``modules``)
        every module with parameters of its own inside them (Quantus' granularity), top down within a block."""
        if granularity == "blocks":
            return self.block_names
        if granularity != "modules":
            raise ValueError(f"granularity {granularity!r}; choose one of {list(GRANULARITIES)}")
        units: list[str] = []
        for block in self.block_names:
            inside = [name for name, module in self.block(block).named_modules(prefix=block) if has_own_parameters(module)]
            units.extend(reversed(inside))  # modules run in registration order: the last is nearest the logits
        return tuple(units)

    def init_unit(self, name: str, generator: torch.Generator | None = None) -> None:
        """Re-initialize a randomization unit (a block, or a module inside one) with the model's initializer."""
        if name in self.block_names:
            self.init_block(name, generator)
        else:
            self.init_module(self.get_submodule(name), generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialize every block (a freshly built, untrained model)."""
        for name in self.block_names:
            self.init_block(name, generator)
