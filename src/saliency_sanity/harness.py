"""The public way to explain a model on inputs with configured methods, with shared work inside.

``Harness(params, seed=..., batch_size=...)`` holds the config's ``methods`` section and binds each
method with :meth:`Method.bind <saliency_sanity.methods.registry.Method.bind>`, the one place a
method's parameters are built. ``harness.explain(model, x, target, stage=k)`` returns every
applicable method's maps; randomization, the theory checks, the benchmarks and later evaluations
all call it.

Shared work: within one call, methods share computations (:mod:`saliency_sanity.methods.reuse`):
SmoothGrad, SmoothGrad-squared and VarGrad reduce one set of noisy gradients, Guided Grad-CAM
reuses the Guided Backprop and Grad-CAM maps, Gradient x Input the gradient; the first method of such a group pays the time.
Model-free deterministic methods (edge detectors) do not depend on the model and are computed
once per set of inputs. ``harness.seconds`` accumulates each method's time.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

import saliency_sanity.methods  # noqa: F401  (importing the package registers every method)
from saliency_sanity.context import Context, ValidRange
from saliency_sanity.contracts import NO_BASELINE
from saliency_sanity.methods.registry import METHODS, BoundMethod, Method, default_methods
from saliency_sanity.methods.reuse import Memo, shared_work

log = logging.getLogger(__name__)


class Harness:
    """Explain models with the configured methods (default: every registered one, opt-in ones where
    ``params`` names them), stage by stage."""

    def __init__(
        self,
        params: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        methods: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        train_data: torch.Tensor | None = None,
        valid_range: ValidRange = ValidRange(),
    ) -> None:
        self.params = {name: dict(p or {}) for name, p in (params or {}).items()}
        for name in self.params:
            METHODS.get_entry(name, f"methods.{name}")
        if methods is None:  # the default methods, and an opt-in one where the config names it
            methods = [name for name in METHODS.names() if name in default_methods() or name in self.params]
        self.methods = [METHODS.get_entry(name) for name in methods]
        self.context = Context(seed=seed, batch_size=batch_size, train_data=train_data, valid_range=valid_range)
        for method in self.methods:  # check every method's parameters before any work
            method.bind(self.params.get(method.name), self.context)
        self.seconds: dict[str, float] = defaultdict(float)
        self.reused: set[str] = set()  # methods that took work another method had done in the same call
        self.current: str | None = None  # the method running now (profilers attribute work to it)
        self._fixed: dict[str, torch.Tensor] = {}  # model-free deterministic maps of self._fixed_for
        self._fixed_for: torch.Tensor | None = None

    def needs_train_data(self) -> bool:
        """Whether a configured path method's baseline draws from the training inputs."""
        return any(bound.baseline is not None and bound.baseline.baseline.needs_train_data
                   for bound in (self.bind(method) for method in self.methods))

    def reseed(self, seed: int) -> None:
        """Draw the stochastic methods' noise from ``seed`` from now on (a protocol matrix runs several seeds)."""
        self.context = replace(self.context, seed=seed)

    def set_data(self, *, valid_range: ValidRange, train_data: torch.Tensor | None = None) -> None:
        """The inputs' valid range and the training inputs, for the baselines (the runner sets them
        once it has loaded the data)."""
        self.context = replace(self.context, valid_range=valid_range, train_data=train_data)

    def applicable(self, model: nn.Module) -> list[Method]:
        """The configured methods that apply to ``model`` (e.g. Grad-CAM needs a Grad-CAM layer)."""
        methods = [m for m in self.methods if m.applies_to(model)]
        for method in self.methods:
            if method not in methods:
                log.info("skipping %s: it does not apply to %s (needs %s)", method.name, type(model).__name__,
                         sorted(method.requires))
        if not methods:
            raise ValueError(f"no configured method applies to {type(model).__name__}")
        return methods

    def bind(self, method: Method, stage: int = 0) -> BoundMethod:
        return method.bind(self.params.get(method.name), self.context.at_stage(stage))

    def baseline_label(self, method: Method) -> str:
        """The baseline a method runs with here, as tables name it (``none`` for a method without one)."""
        spec = self.bind(method).baseline
        return NO_BASELINE if spec is None else spec.label

    def with_baseline(self, baseline: str | Mapping[str, Any]) -> Harness:
        """This harness's path methods only, each with ``baseline`` (a name, or a mapping with ``name``
        and the baseline's parameters) instead of its configured one (and its own draws, one unless the
        method sets them); same seed, batch size and data."""
        params = {name: {**{k: v for k, v in p.items() if k != "baseline_draws"}, "baseline": baseline}
                  if METHODS[name].needs_baseline else p for name, p in self.params.items()}
        for method in self.methods:
            if method.needs_baseline:
                params.setdefault(method.name, {"baseline": baseline})
        other = Harness(params, methods=[m.name for m in self.methods if m.needs_baseline])
        other.context = self.context
        return other

    def variants(self, model: nn.Module, baselines: Sequence[str | Mapping[str, Any]] = ()) -> dict[tuple[str, str], Harness]:
        """(method, baseline label) -> the harness that runs that series: every applicable method with its
        configured baseline (this harness), then each path method with each of ``baselines`` it was not
        configured with (:meth:`with_baseline`), in that order."""
        methods = self.applicable(model)
        series = {(m.name, self.baseline_label(m)): self for m in methods}
        for baseline in baselines:
            other = self.with_baseline(baseline)
            for method in other.methods:
                if method in methods:
                    series.setdefault((method.name, other.baseline_label(method)), other)
        return series

    def iter_explain_baselines(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, baselines: Sequence[str | Mapping[str, Any]],
        *, stage: int = 0,
    ) -> Iterator[tuple[str, str, torch.Tensor]]:
        """(method, baseline label, maps) of every series of :meth:`variants` (every method with every baseline,
        as the attribution-baselines study runs them); the methods of one harness share their work."""
        by_harness: dict[Harness, list[tuple[str, str]]] = {}
        for key, harness in self.variants(model, baselines).items():
            by_harness.setdefault(harness, []).append(key)
        for harness, keys in by_harness.items():
            labels = dict(keys)
            for name, maps in harness.iter_explain(model, x, target, stage=stage,
                                                   methods=[METHODS[name] for name, _ in keys]):
                yield name, labels[name], maps

    def iter_explain(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, stage: int = 0,
        methods: Sequence[Method] | None = None,
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, maps) for each applicable method in turn, maps detached on x's device."""
        if self._fixed_for is not x:
            self._fixed, self._fixed_for = {}, x
        memo = Memo()
        try:
            for method in methods if methods is not None else self.applicable(model):
                if method.name in self._fixed:
                    yield method.name, self._fixed[method.name]
                    continue
                start, hits = time.perf_counter(), memo.hits
                self.current = method.name
                try:
                    with shared_work(memo):
                        maps = self.bind(method, stage)(model, x, target)
                    if x.device.type == "cuda":
                        torch.cuda.synchronize(x.device)
                finally:
                    self.current = None
                self.seconds[method.name] += time.perf_counter() - start
                if memo.hits > hits:
                    self.reused.add(method.name)
                if method.model_free and not method.stochastic:
                    self._fixed[method.name] = maps
                yield method.name, maps
        finally:
            memo.clear()  # the call's shared work is freed with it

    def explain(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, stage: int = 0,
        methods: Sequence[Method] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every applicable method's maps of ``x`` for ``target`` (tensors of x's shape, on x's device)."""
        return dict(self.iter_explain(model, x, target, stage=stage, methods=methods))

    def log_timings(self, stages: int) -> None:
        for name, seconds in self.seconds.items():
            log.info("%s: %.2f s over %d stages%s", name, seconds, stages,
                     " (reused work of a method that ran before it at the same stage, which paid for it)"
                     if name in self.reused else "")
