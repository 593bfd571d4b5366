"""The evaluation registry: analyses of a model's maps beyond the randomization tests (IG's
convergence, the output along the path, ablations, decoy checks). Each is one decorated function
``fn(run, **params) -> DataFrame`` that returns a tidy table with its declared columns; the runner
(:mod:`saliency_sanity.evaluation.runner`) loads the model and data, adds the identity columns
(:data:`~saliency_sanity.contracts.EVALUATION_IDENTITY`) and writes
``results/evaluation/<model>-<name>.csv``, and the arrays the function kept (:meth:`EvaluationRun.keep`)
to ``results/evaluation/<model>-<name>.npz``. The config's ``evaluations.<name>`` section names the
models (``models``), how many test images (``n_images``) and the function's keyword parameters.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from saliency_sanity.harness import Harness
from saliency_sanity.jobs import ExplainJob
from saliency_sanity.methods.common import batch_slices
from saliency_sanity.registry import Registry

SECTION_KEYS = ("models", "n_images")  # keys of evaluations.<name> that are not the function's parameters
IMAGES_PER_CALL = 100  # images explained per harness call: bounds what a method holds at once (samples, draws)


@dataclass(frozen=True)
class EvaluationRun:
    """What an evaluation works on: the loaded job (model, test examples, device, the data source with
    the seed), the harness with the config's methods, the batch size of the run and the job's settings
    (:func:`saliency_sanity.config.evaluation_settings`); and the arrays it keeps for the figures
    (:meth:`keep`), written to the evaluation's archive."""

    job: ExplainJob
    harness: Harness
    batch_size: int | None
    config: Mapping[str, Any] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    def keep(self, **arrays: np.ndarray | torch.Tensor) -> None:
        """Keep arrays (tensors are moved to the CPU) for ``results/evaluation/<model>-<name>.npz``."""
        for key, value in arrays.items():
            self.kept[key] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

    def explain(self, x: torch.Tensor, target: torch.Tensor, baselines: Sequence[Any] = ()
                ) -> Iterator[tuple[str, str, slice, torch.Tensor]]:
        """(method, baseline, images, maps): every method's maps of x, and every path method's per listed
        baseline (:meth:`Harness.iter_explain_baselines`), IMAGES_PER_CALL images at a time (``images``:
        which of x the maps are of)."""
        for images in batch_slices(len(x), IMAGES_PER_CALL):
            for method, baseline, maps in self.harness.iter_explain_baselines(self.job.model, x[images], target[images],
                                                                              baselines):
                yield method, baseline, images, maps


EvaluationFn = Callable[..., pd.DataFrame]


@dataclass(frozen=True)
class Evaluation:
    """A registered evaluation: its function, the columns of its table, and the datasets it applies to."""

    name: str
    fn: EvaluationFn
    columns: tuple[str, ...]
    datasets: tuple[str, ...] | None = None  # None: any dataset
    description: str = ""
    reads: tuple[str, ...] = ()  # config sections it reads beyond the randomization job's (e.g. similarity)
    check: Callable[[Mapping[str, Any]], None] | None = None  # checks its parameters' values when the DAG is planned

    def accepts(self) -> set[str]:
        """Its keyword parameters, settable in the config's ``evaluations.<name>`` section."""
        params = inspect.signature(self.fn).parameters
        return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The section's function parameters; an unknown one, or a value the evaluation's own check refuses, is an
        error naming the config key."""
        params = {k: v for k, v in params.items() if k not in SECTION_KEYS}
        unknown = sorted(set(params) - self.accepts())
        if unknown:
            raise ValueError(f"config key evaluations.{self.name} has unknown parameter(s) {unknown}; "
                             f"{self.name} takes {sorted(self.accepts() | set(SECTION_KEYS))}")
        if self.check is not None:
            self.check(params)
        return params

    def applies_to(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def __call__(self, run: EvaluationRun, **params: Any) -> pd.DataFrame:
        if not self.applies_to(run.job.dataset):
            raise ValueError(f"evaluation {self.name!r} applies to datasets {list(self.datasets)}, not "
                             f"{run.job.dataset!r} (model {run.job.name}); take it out of evaluations.{self.name}.models")
        table = self.fn(run, **self.check_params(params))
        if tuple(table.columns) != self.columns:
            raise RuntimeError(f"evaluation {self.name!r} returned columns {list(table.columns)}, it declares "
                               f"{list(self.columns)}")
        return table


EVALUATIONS: Registry[Evaluation] = Registry("evaluation")


def register_evaluation(
    name: str, *, columns: tuple[str, ...], datasets: tuple[str, ...] | None = None, reads: tuple[str, ...] = (),
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[EvaluationFn], EvaluationFn]:
    """Register ``fn(run, **params) -> DataFrame`` (``columns``, in order) as evaluation ``name``; ``reads``: the
    config sections it needs besides the randomization job's (:func:`saliency_sanity.config.evaluation_settings`);
    ``check(params)``: raises for a bad parameter value, so that it stops the workflow before any job runs."""

    def decorator(fn: EvaluationFn) -> EvaluationFn:
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        EVALUATIONS.add(name, Evaluation(name, fn, tuple(columns), datasets, doc, tuple(reads), check))
        return fn

    return decorator
