"""The baseline registry: references for path-attribution methods (Integrated Gradients, DeepLIFT).

A baseline is one decorated function ``fn(x, context, **params) -> Tensor`` of x's shape, in the
model's *input space* (after preprocessing): the paper's zero baseline is black for MNIST inputs in
[0, 1] but the ImageNet mean colour for normalized ImageNet inputs. ``context.valid_range`` says
which values are valid pixels there (:class:`~saliency_sanity.context.ValidRange`), so the
baselines of "Visualizing the Impact of Feature Attribution Baselines" (Sturmfels et al., Distill
2020) stay in range on every model. The config names one per path method, by name or with
parameters: ``methods: {integrated_gradients: {baseline: zero}}`` or ``{baseline: {name: blurred,
sigma: 5}}`` (default ``zero``); a method receives the tensor as its ``baseline`` argument.

A stochastic baseline draws from ``context.fixed_generator``: the same draw at every stage of a
randomization test, so that only the model changes between the maps compared.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from saliency_sanity.context import Context
from saliency_sanity.registry import Registry

BaselineFn = Callable[..., torch.Tensor]
DEFAULT_BASELINE = "zero"


@dataclass(frozen=True)
class Baseline:
    """A registered baseline and what it needs."""

    name: str
    fn: BaselineFn
    stochastic: bool = False  # draws from context.fixed_generator
    needs_train_data: bool = False  # reads context.train_data
    description: str = ""

    def accepts(self) -> set[str]:
        """Its keyword parameters (beyond x and context), settable from the config."""
        params = inspect.signature(self.fn).parameters
        return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


BASELINES: Registry[Baseline] = Registry("baseline")


def register_baseline(
    name: str, *, stochastic: bool = False, needs_train_data: bool = False
) -> Callable[[BaselineFn], BaselineFn]:
    """Register ``fn(x, context, **params)`` as baseline ``name``; returns ``fn`` unchanged."""

    def decorator(fn: BaselineFn) -> BaselineFn:
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        BASELINES.add(name, Baseline(name, fn, stochastic, needs_train_data, doc))
        return fn

    return decorator


@dataclass(frozen=True)
class BaselineSpec:
    """A baseline as the config names it: the registered name and its parameters."""

    name: str
    params: Mapping[str, Any]

    @classmethod
    def parse(cls, value: Any, config_key: str | None = None) -> BaselineSpec:
        """``"name"`` or ``{name: ..., <param>: ...}``, checked against the registry (a spec is returned as is)."""
        if isinstance(value, BaselineSpec):
            return value
        where = f"config key {config_key}" if config_key else "the baseline"
        if isinstance(value, Mapping):
            params = dict(value)
            name = params.pop("name", None)
            if name is None:
                raise ValueError(f"{where} is a mapping without 'name'; write e.g. {{name: blurred, sigma: 5}}")
        elif isinstance(value, str):
            name, params = value, {}
        else:
            raise ValueError(f"{where} must be a baseline name or a mapping with 'name', got {value!r}")
        baseline = BASELINES.get_entry(str(name), config_key)
        unknown = sorted(set(params) - baseline.accepts())
        if unknown:
            raise ValueError(f"{where} has unknown parameter(s) {unknown} for baseline {name!r}; it takes "
                             f"{sorted(baseline.accepts()) or 'none'}")
        return cls(str(name), params)

    @property
    def baseline(self) -> Baseline:
        return BASELINES.get_entry(self.name)

    @property
    def label(self) -> str:
        """How tables and figures name it: ``blurred``, or with parameters ``blurred(sigma=5)``."""
        if not self.params:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"


def make_baseline(spec: str | Mapping[str, Any] | BaselineSpec, x: torch.Tensor, context: Context,
                  config_key: str | None = None) -> torch.Tensor:
    """The baseline ``spec`` for inputs x, checked to have x's shape, dtype and device."""
    spec = spec if isinstance(spec, BaselineSpec) else BaselineSpec.parse(spec, config_key)
    entry = spec.baseline
    if entry.needs_train_data and context.train_data is None:
        raise ValueError(f"baseline {spec.name!r} draws from the training inputs, and none were given "
                         f"(Harness(train_data=...); the workflow loads them for datasets with a train split)")
    baseline = entry.fn(x, context, **spec.params)
    if baseline.shape != x.shape or baseline.device != x.device or baseline.dtype != x.dtype:
        raise RuntimeError(f"baseline {spec.name!r} returned {tuple(baseline.shape)} {baseline.dtype} on "
                           f"{baseline.device} for inputs {tuple(x.shape)} {x.dtype} on {x.device}")
    return baseline


def _generator(name: str, x: torch.Tensor, context: Context) -> torch.Generator:
    return context.fixed_generator(f"baseline/{name}", x.device)


@register_baseline("zero")
def zero_baseline(x: torch.Tensor, context: Context | None = None) -> torch.Tensor:
    """All zeros in input space (Adebayo et al.'s IG baseline)."""
    return torch.zeros_like(x)


@register_baseline("constant")
def constant_baseline(x: torch.Tensor, context: Context, *, colour: float | list[float] = 0.0) -> torch.Tensor:
    """A constant colour, as a fraction of each channel's valid range: 0 (default) is black, 1 white."""
    low, high = context.valid_range.bounds(x)
    colour_t = torch.as_tensor(colour, dtype=x.dtype, device=x.device).reshape(-1)
    if colour_t.numel() not in (1, x.shape[1]) or not ((colour_t >= 0) & (colour_t <= 1)).all():
        raise ValueError(f"constant baseline colour must be one number or one per channel ({x.shape[1]}), "
                         f"each in [0, 1]; got {colour}")
    colour_t = colour_t.view(1, -1, *([1] * (x.dim() - 2)))
    return (low + colour_t * (high - low)).expand_as(x).clone()


@register_baseline("max_distance")
def max_distance_baseline(x: torch.Tensor, context: Context) -> torch.Tensor:
    """Per pixel, the valid value farthest from x: the range's top where x is in its lower half, else its bottom."""
    low, high = context.valid_range.bounds(x)
    return torch.where(x - low < high - x, high, low).expand_as(x).clone()


def _mirrored(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a line of n pixels extended by ``radius`` on each side by mirroring at the edges
    (d c b a | a b c d | d c b a, SciPy's "reflect"), however large the radius."""
    j = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(j < n, j, 2 * n - 1 - j)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur over the spatial dimensions, truncated at 3 sigma, edges mirrored
    (so a blur much wider than the image tends to its mean colour), on x's device."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive (pixels), got {sigma}")
    radius = max(1, int(3 * sigma + 0.5))  # SciPy's truncation
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    out = x
    for axis in range(2, x.dim()):
        moved = out.movedim(axis, -1)
        padded = moved.index_select(-1, _mirrored(moved.shape[-1], radius, x.device))
        blurred = F.conv1d(padded.reshape(-1, 1, padded.shape[-1]), kernel).reshape(moved.shape)
        out = blurred.movedim(-1, axis)
    return out


@register_baseline("blurred")
def blurred_baseline(x: torch.Tensor, context: Context, *, sigma: float = 20.0) -> torch.Tensor:
    """x blurred by a Gaussian of ``sigma`` pixels (the article used up to 20): it keeps the colours, not the edges."""
    return gaussian_blur(x, float(sigma))


@register_baseline("uniform", stochastic=True)
def uniform_baseline(x: torch.Tensor, context: Context) -> torch.Tensor:
    """Independent uniform noise over each channel's valid range."""
    low, high = context.valid_range.bounds(x)
    u = torch.rand(x.shape, generator=_generator("uniform", x, context), device=x.device, dtype=x.dtype)
    return low + u * (high - low)


@register_baseline("gaussian", stochastic=True)
def gaussian_baseline(x: torch.Tensor, context: Context, *, sigma: float = 1.0) -> torch.Tensor:
    """x plus Gaussian noise of ``sigma`` (in units of the valid range's span), clipped to the valid range."""
    if not sigma > 0:
        raise ValueError(f"gaussian baseline sigma must be positive, got {sigma}")
    low, high = context.valid_range.bounds(x)
    noise = torch.randn(x.shape, generator=_generator("gaussian", x, context), device=x.device, dtype=x.dtype)
    return torch.maximum(torch.minimum(x + float(sigma) * (high - low) * noise, high), low)


@register_baseline("training", stochastic=True, needs_train_data=True)
def training_baseline(x: torch.Tensor, context: Context) -> torch.Tensor:
    """One training input per example, drawn uniformly (with replacement) from ``context.train_data``."""
    data = context.train_data
    if data.shape[1:] != x.shape[1:]:
        raise ValueError(f"training inputs have shape {tuple(data.shape[1:])}, the inputs {tuple(x.shape[1:])}")
    index = torch.randint(len(data), (x.shape[0],), generator=_generator("training", data, context),
                          device=data.device)
    return data[index].to(device=x.device, dtype=x.dtype)


def resolve_baseline(x: torch.Tensor, baseline: torch.Tensor | None) -> torch.Tensor:
    """The baseline for each example of x: None means zeros; a tensor is broadcast to x.

    A single baseline of shape (C, H, W) or (1, C, H, W) is shared by every example;
    a (B, C, H, W) tensor gives one baseline per example.
    """
    if baseline is None:
        return zero_baseline(x)
    baseline = torch.as_tensor(baseline).detach()
    if baseline.device != x.device:
        raise ValueError(f"baseline is on {baseline.device} but x is on {x.device}; move it with .to(x.device)")
    try:
        return torch.broadcast_to(baseline.to(x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to x's shape {tuple(x.shape)}; "
            "pass one baseline per example or one shared by all"
        ) from None
