"""The registry of re-initialization laws: what a randomization test puts in place of a block's
trained weights.

The verdict of a sanity check can depend on this choice (Hedström et al. 2023, Binder et al.
2023): the paper re-drew each block from the architecture's own initializer; Quantus' PyTorch path
calls each module's ``reset_parameters``; its TensorFlow path shuffles the trained weights. A law
is one decorated function ``fn(block, generator, **params)`` that changes ``block``'s parameters
in place, with every draw taken from ``generator`` so that a seed gives the same weights on any
device. The model's own initializer is the ``model`` law (:meth:`SanityModel.init_block`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from saliency_sanity.models.base import SanityModel, has_own_parameters
from saliency_sanity.registry import Registry

LawFn = Callable[..., None]
MODEL_LAW = "model"


@dataclass(frozen=True)
class Law:
    name: str
    fn: LawFn | None  # None: the model's own initializer (it needs the model, not only the block)
    description: str = ""

    def accepts(self) -> set[str]:
        if self.fn is None:
            return set()
        return {p.name for p in inspect.signature(self.fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


LAWS: Registry[Law] = Registry("re-initialization law")
LAWS.add(MODEL_LAW, Law(MODEL_LAW, None, "the architecture's own initializer (the paper's choice)"))


def register_law(name: str) -> Callable[[LawFn], LawFn]:
    """Register ``fn(block, generator, **params)`` as re-initialization law ``name``."""

    def decorator(fn: LawFn) -> LawFn:
        LAWS.add(name, Law(name, fn, (fn.__doc__ or "").strip().split("\n")[0]))
        return fn

    return decorator


@dataclass(frozen=True)
class LawSpec:
    """A law with its parameters, as the config names it (``randomization.law``)."""

    law: Law
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, config_key: str = "randomization.law") -> LawSpec:
        """``"name"`` or ``{name: ..., <param>: ...}``, checked against the registry."""
        if isinstance(value, LawSpec):
            return value
        params = dict(value) if isinstance(value, Mapping) else {"name": value}
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"config key {config_key} must be a law name or a mapping with 'name' "
                             f"(e.g. {{name: gaussian_noise, scale: 0.5}}), got {value!r}")
        law = LAWS.get_entry(name, config_key)
        unknown = sorted(set(params) - law.accepts())
        if unknown:
            raise ValueError(f"config key {config_key}: law {name!r} has no parameter(s) {unknown}; "
                             f"it takes {sorted(law.accepts()) or 'none'}")
        return cls(law, params)

    def apply(self, model: SanityModel, unit: str, generator: torch.Generator) -> None:
        """Re-initialize ``model``'s unit ``unit`` (a block, or a module inside one) by this law, in place."""
        if self.law.fn is None:
            model.init_unit(unit, generator)
        else:
            self.law.fn(model.get_submodule(unit), generator, **self.params)


@register_law("reset_parameters")
def reset_parameters(block: nn.Module, generator: torch.Generator) -> None:
    """Each module's own ``reset_parameters`` (PyTorch's default initializers; Quantus' PyTorch path)."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # reset_parameters draws from the global generator
        torch.manual_seed(seed)
        for module in block.modules():
            if hasattr(module, "reset_parameters") and has_own_parameters(module):
                module.reset_parameters()


@register_law("permute")
def permute(block: nn.Module, generator: torch.Generator) -> None:
    """The trained values of each parameter tensor, shuffled within it (Quantus' TensorFlow path)."""
    with torch.no_grad():
        for p in block.parameters():
            order = torch.randperm(p.numel(), generator=generator)
            p.copy_(p.flatten()[order].view_as(p))


@register_law("gaussian_noise")
def gaussian_noise(block: nn.Module, generator: torch.Generator, *, scale: float = 1.0) -> None:
    """The trained weights plus Gaussian noise of ``scale`` times each tensor's own standard deviation."""
    if scale <= 0:
        raise ValueError(f"randomization.law gaussian_noise needs scale > 0, got {scale}")
    with torch.no_grad():
        for p in block.parameters():
            spread = p.std(unbiased=False) if p.numel() > 1 else p.abs().reshape(())
            p.add_(scale * spread * torch.randn(p.shape, generator=generator, dtype=p.dtype))
