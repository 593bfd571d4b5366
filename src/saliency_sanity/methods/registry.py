"""The one registry of explanation methods.

Every method is a plain function ``fn(model, x, target, **params) -> Tensor`` registered
with :func:`register`. The registry wraps it in a :class:`Method` that enforces the method
contract of DESIGN.md (output of x's shape on x's device; the model's mode, hooks and
``requires_grad`` flags restored), so experiments, figures and tests can treat every method,
including model-free controls, the same way.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from saliency_sanity.baselines import DEFAULT_BASELINE, BaselineSpec, make_baseline
from saliency_sanity.context import Context
from saliency_sanity.registry import Registry, UnknownNameError

MethodFn = Callable[..., torch.Tensor]
BOUND_BY_CONTEXT = ("generator", "baseline")  # parameters that come from the context, not the config


# the annotations a config value is checked against; any other (a tensor, a tuple) is left to the method
PLAIN_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                                            "None": (type(None),)}


def check_parameter_type(method: Method, name: str, value: Any) -> None:
    """A config value of the type the method's signature declares (``int``, ``float | None`` ...), else an
    error naming the config key, so that ``n_samples: abc`` stops the run when it is planned, not mid-job."""
    annotation = inspect.signature(method.fn).parameters[name].annotation
    parts = [part.strip() for part in str(annotation).split("|")]
    if annotation is inspect.Parameter.empty or any(part not in PLAIN_TYPES for part in parts):
        return
    allowed = tuple(t for part in parts for t in PLAIN_TYPES[part])
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        raise ValueError(f"config key methods.{method.name}.{name} must be {annotation}, got {value!r} "
                         f"({type(value).__name__})")


class UnknownMethodError(UnknownNameError):
    """Raised for a method name that is not registered."""


@dataclass(frozen=True)
class Method:
    """A registered explanation method and what it needs."""

    name: str
    fn: MethodFn
    needs_baseline: bool = False
    # The maps sum to f(x) - f(baseline) for the target logit (completeness, summation-to-delta);
    # the runner records how far each map is from it (saliency_sanity.completeness).
    completeness: bool = False
    model_free: bool = False
    stochastic: bool = False
    requires: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    # A method that takes several baseline draws names the parameter that counts them: its ``baseline``
    # is then (draws, B, ...) (expected gradients).
    baseline_draws: str | None = None
    # Run only where the config's methods section names it (a method that needs what not every run has).
    opt_in: bool = False
    # The noise stream a stochastic method's generator is seeded from (the runner seeds by it, not
    # by the name): methods that share a key draw the same noise, so they can share its samples
    # (see reuse.py). Defaults to the method's own name.
    noise_key: str = ""

    def __post_init__(self) -> None:
        if not self.noise_key:
            object.__setattr__(self, "noise_key", self.name)

    def applies_to(self, model: nn.Module) -> bool:
        """Whether the model offers what the method needs (e.g. a Grad-CAM layer)."""
        return all(getattr(model, f"{req}", None) is not None for req in self.requires)

    def accepts(self) -> set[str]:
        """Keyword parameters the function takes (beyond model, x, target)."""
        params = inspect.signature(self.fn).parameters
        return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def bind(self, params: Mapping[str, Any] | None = None, context: Context | None = None) -> BoundMethod:
        """The method with its parameters: the one place they are built.

        ``params`` is the config's entry for the method (``methods.<name>``): its keyword
        parameters, and for a path method its baseline (``baseline``: a name, or a mapping with
        ``name`` and the baseline's parameters; default ``zero``) and ``baseline_draws``: with k > 1
        draws of a stochastic baseline the maps are the mean over the k (:meth:`BoundMethod.__call__`).
        The context adds the batch size (where the method takes one), a generator seeded from the
        seed, the stage and the noise key (stochastic methods), and the baseline tensor. Unknown
        parameters and baselines are errors that name the config key.
        """
        params = dict(params or {})
        context = context or Context()
        baseline, draws = None, 1
        if self.needs_baseline:
            baseline = BaselineSpec.parse(params.pop("baseline", DEFAULT_BASELINE), f"methods.{self.name}.baseline")
            draws = params.pop("baseline_draws", 1)
            if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
                raise ValueError(f"config key methods.{self.name}.baseline_draws must be a positive integer, got {draws!r}")
            if draws > 1 and not baseline.baseline.stochastic:
                raise ValueError(f"config key methods.{self.name}.baseline_draws is {draws}, but baseline "
                                 f"{baseline.name!r} draws nothing: every draw would be the same")
            if self.baseline_draws is not None:
                if draws > 1:
                    raise ValueError(f"method {self.name!r} sets its own draws ({self.baseline_draws}); "
                                     f"drop methods.{self.name}.baseline_draws")
                draws = params.get(self.baseline_draws, inspect.signature(self.fn).parameters[self.baseline_draws].default)
        settable = self.accepts() - set(BOUND_BY_CONTEXT)
        unknown = sorted(set(params) - settable)
        if unknown:
            raise ValueError(f"config key methods.{self.name} has unknown parameter(s) {unknown}; "
                             f"{self.name} takes {sorted(settable) or 'none'}"
                             + (" and baseline, baseline_draws" if self.needs_baseline else ""))
        for name, value in params.items():
            check_parameter_type(self, name, value)
        if "batch_size" in self.accepts():
            params.setdefault("batch_size", context.batch_size)
        return BoundMethod(self, params, baseline, context, draws)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, **params
    ) -> torch.Tensor:
        if not self.applies_to(model):
            missing = [r for r in self.requires if getattr(model, r, None) is None]
            raise ValueError(
                f"method {self.name!r} does not apply to {type(model).__name__}: "
                f"the model has no {', '.join(missing)}"
            )
        unknown = set(params) - self.accepts()
        if unknown:
            raise TypeError(
                f"method {self.name!r} got unknown parameter(s) {sorted(unknown)}; "
                f"it accepts {sorted(self.accepts())}"
            )
        target = torch.as_tensor(target, device=x.device, dtype=torch.long).reshape(-1)
        if target.shape[0] != x.shape[0]:
            raise ValueError(f"target has {target.shape[0]} entries for a batch of {x.shape[0]}")
        with preserved_state(model):
            model.eval()
            out = self.fn(model, x.detach(), target, **params)
        if out.shape != x.shape:
            raise RuntimeError(
                f"method {self.name!r} returned shape {tuple(out.shape)} for input {tuple(x.shape)}"
            )
        return out.detach().to(device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class BoundMethod:
    """A method with its parameters and context (:meth:`Method.bind`): call it as ``bound(model, x, target)``."""

    method: Method
    params: Mapping[str, Any]
    baseline: BaselineSpec | None
    context: Context
    draws: int = 1  # baseline draws: averaged over (baseline_draws), or the method's own count

    @property
    def name(self) -> str:
        return self.method.name

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The maps; with k > 1 baseline draws for a one-baseline method, the mean of its maps from each
        draw, computed in one call on the k tiled copies of x (the wrapper over any baseline)."""
        params = dict(self.params)
        if self.method.stochastic:
            params["generator"] = self.context.generator(self.method.noise_key, x.device)
        if self.baseline is None:
            return self.method(model, x, target, **params)
        baselines = self.baselines_for(x)
        if self.method.baseline_draws is not None:
            return self.method(model, x, target, baseline=baselines, **params)
        if self.draws == 1:
            return self.method(model, x, target, baseline=baselines[0], **params)
        tiled = x.repeat(self.draws, *([1] * (x.dim() - 1)))
        maps = self.method(model, tiled, target.repeat(self.draws), baseline=baselines.flatten(0, 1), **params)
        return maps.view(self.draws, *x.shape).mean(0)

    def baselines_for(self, x: torch.Tensor) -> torch.Tensor:
        """The configured baseline's draws for inputs x, (draws, *x.shape) (an error for other methods)."""
        if self.baseline is None:
            raise ValueError(f"method {self.name!r} takes no baseline")
        return torch.stack([make_baseline(self.baseline, x, replace(self.context, draw=j), f"methods.{self.name}.baseline")
                            for j in range(self.draws)])


class preserved_state:
    """Context manager restoring a model's train/eval modes and ``requires_grad`` flags."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        return self.model

    def __exit__(self, *exc):
        for m, training in self.modes:
            m.training = training
        for p, flag in self.flags:
            p.requires_grad_(flag)
        return False


METHODS: Registry[Method] = Registry("method", UnknownMethodError)


def register(
    name: str,
    *,
    needs_baseline: bool = False,
    completeness: bool = False,
    model_free: bool = False,
    stochastic: bool = False,
    requires: tuple[str, ...] = (),
    noise_key: str | None = None,
    baseline_draws: str | None = None,
    opt_in: bool = False,
) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn`` under ``name``; returns ``fn`` unchanged so it stays callable directly.

    ``baseline_draws`` names the parameter counting the baseline draws a method takes at once (its
    ``baseline`` is then (draws, B, ...)); an ``opt_in`` method runs only where the config names it.
    ``completeness`` marks a path method whose maps sum to f(x) - f(baseline) (IG, DeepLIFT), so its
    error from that is recorded and tested. ``noise_key`` names the noise stream of a stochastic method (default: its name); methods that
    reduce the same noisy samples differently (SmoothGrad, VarGrad) share one to share the samples.
    """

    def decorator(fn: MethodFn) -> MethodFn:
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        METHODS.add(name, Method(
            name=name,
            fn=fn,
            needs_baseline=needs_baseline,
            completeness=completeness,
            model_free=model_free,
            stochastic=stochastic,
            requires=frozenset(requires),
            description=doc,
            noise_key=noise_key or name,
            baseline_draws=baseline_draws,
            opt_in=opt_in,
        ))
        return fn

    return decorator


def get_method(name: str) -> Method:
    """Look a method up by name, with an error that lists the registered ones."""
    return METHODS.get_entry(name)


def default_methods() -> list[str]:
    """The methods every run explains with (all registered ones but the opt-in ones), in registration order."""
    return [name for name, method in METHODS.items() if not method.opt_in]


def available_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    return METHODS.names()
