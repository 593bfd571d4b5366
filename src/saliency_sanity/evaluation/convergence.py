"""How fast Integrated Gradients converges: completeness error against passes, per quadrature rule and
for per-image adaptive refinement, and the target logit along the path (saturation), for the
attribution-baselines study.

Each (rule, steps) is one IG computation; its cost is ``steps`` gradient passes per image, the
x-axis of the study. The error is :func:`~saliency_sanity.methods.completeness.completeness_error`.
Adaptive IG (:func:`~saliency_sanity.methods.gradients.adaptive_integrated_gradients`) refines each
image's path until its error is under a tolerance: its passes differ per image.

The registered evaluations ``convergence`` and ``path_outputs`` run these on a model's first test
images, for its predicted class, with IG's configured baseline and each baseline the config lists.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from saliency_sanity.evaluation.registry import EvaluationRun, register_evaluation
from saliency_sanity.methods.completeness import completeness_error, logits_of, target_logits
from saliency_sanity.methods.gradients import (
    ADAPTIVE_RULES,
    PATH_RULES,
    adaptive_integrated_gradients,
    integrated_gradients,
    locally_refined_integrated_gradients,
)
from saliency_sanity.methods.registry import METHODS

CONVERGENCE_COLUMNS = ("rule", "steps", "tolerance", "image", "passes", "error", "map_error")
REFERENCE_RULE = "midpoint"  # the reference map: this rule with reference_steps points
PATH_COLUMNS = ("image", "alpha", "logit")
PATH_METHOD = "integrated_gradients"  # whose configured baseline the study uses
LOCAL = "local"  # the adaptive rule that refines where the integrand jumps


def map_error(maps: torch.Tensor, reference: torch.Tensor | None) -> list[float]:
    """Each map's relative L2 distance from the reference map, ||phi - phi_ref|| / ||phi_ref|| (NaN without
    one): what a small completeness error should mean, not just a sum that happens to match."""
    if reference is None:
        return [float("nan")] * len(maps)
    return ((maps - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)).tolist()


def convergence_table(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, *,
    rules: Sequence[str], step_counts: Sequence[int], batch_size: int | None = None,
    reference: torch.Tensor | None = None,
) -> pd.DataFrame:
    """One row per (rule, steps, image): IG's completeness error with that many path points
    (tolerance NaN, passes = steps), and the map's distance from ``reference`` (:func:`map_error`)."""
    f_x = target_logits(logits_of(model, x, batch_size), target)
    f_base = target_logits(logits_of(model, baseline, batch_size), target)
    rows = []
    with tqdm(total=len(rules) * sum(step_counts), desc="IG convergence", unit="step") as progress:
        for rule in rules:
            for steps in step_counts:
                maps = integrated_gradients(model, x, target, baseline=baseline, steps=steps, rule=rule,
                                            batch_size=batch_size)
                errors = completeness_error(maps, f_x, f_base).tolist()
                rows += [(rule, steps, float("nan"), image, steps, error, distance)
                         for image, (error, distance) in enumerate(zip(errors, map_error(maps, reference)))]
                progress.update(steps)
    return pd.DataFrame(rows, columns=list(CONVERGENCE_COLUMNS))


def adaptive_table(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, *,
    rule: str, steps: int, tolerances: Sequence[float], max_steps: int, batch_size: int | None = None,
    reference: torch.Tensor | None = None,
) -> pd.DataFrame:
    """One row per (tolerance, image): the passes adaptive IG spent on the image and the error it reached
    (rule ``adaptive-<rule>``, steps = the starting points). ``rule``: a nested rule refined everywhere
    (:func:`~saliency_sanity.methods.gradients.adaptive_integrated_gradients`), or ``local``, the trapezoid
    refined where the integrand jumps (:func:`~saliency_sanity.methods.gradients.locally_refined_integrated_gradients`)."""
    f_x = target_logits(logits_of(model, x, batch_size), target)
    f_base = target_logits(logits_of(model, baseline, batch_size), target)
    refine = locally_refined_integrated_gradients if rule == LOCAL else partial(adaptive_integrated_gradients,
                                                                                          rule=rule)
    rows = []
    for tolerance in tqdm(tolerances, desc=f"adaptive IG ({rule})", unit="tolerance"):
        maps, counts = refine(model, x, target, baseline=baseline, steps=steps, tolerance=tolerance,
                              max_steps=max_steps, batch_size=batch_size)
        errors = completeness_error(maps, f_x, f_base).tolist()
        rows += [(f"adaptive-{rule}", steps, tolerance, image, passes, error, distance)
                 for image, (passes, error, distance) in enumerate(zip(counts.tolist(), errors,
                                                                      map_error(maps, reference)))]
    return pd.DataFrame(rows, columns=list(CONVERGENCE_COLUMNS))


def path_outputs(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, *,
    points: int = 101, batch_size: int | None = None,
) -> pd.DataFrame:
    """The target logit at x' + alpha (x - x') for ``points`` alphas from 0 to 1, per image: where it
    saturates, IG's path gradients carry no signal (the article's saturation plot)."""
    alphas = torch.linspace(0.0, 1.0, points, device=x.device, dtype=x.dtype)
    path = baseline + alphas.view(-1, *([1] * x.dim())) * (x - baseline)  # (points, B, C, ...)
    logits = target_logits(logits_of(model, path.flatten(0, 1), batch_size), target.repeat(points)).view(points, -1)
    rows = [(image, alpha, logit) for alpha, row in zip(alphas.tolist(), logits.tolist())
            for image, logit in enumerate(row)]
    return pd.DataFrame(rows, columns=list(PATH_COLUMNS))


def ig_baselines(run: EvaluationRun, baselines: Sequence[str | Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Baseline label -> IG's baseline tensor for the run's images (draw 0 of a stochastic one): the
    configured baseline first, then each listed one."""
    x = run.job.examples.images
    harnesses = [run.harness] + [run.harness.with_baseline(b) for b in baselines]
    method = METHODS[PATH_METHOD]
    return {h.baseline_label(method): h.bind(method).baselines_for(x)[0] for h in harnesses}


def _predicted(run: EvaluationRun) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x = run.job.examples.images
    return run.job.model, x, logits_of(run.job.model, x, run.batch_size).argmax(1)


def _per_baseline(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The tables stacked, each with its baseline label as the first column."""
    return pd.concat([table.assign(baseline=label)[["baseline", *table.columns]] for label, table in tables.items()],
                     ignore_index=True)


@register_evaluation("convergence", columns=("baseline", *CONVERGENCE_COLUMNS))
def convergence(
    run: EvaluationRun, *, rules: Sequence[str] = ("right", "midpoint", "trapezoid", "gauss_legendre"),
    steps: Sequence[int] = (2, 4, 8, 16, 32, 50, 64, 128, 256, 500),
    adaptive: Mapping[str, Mapping[str, int]] | None = None, tolerances: Sequence[float] = (0.1, 0.05, 0.02, 0.01),
    reference_steps: int = 1000, baselines: Sequence[Any] = (),
) -> pd.DataFrame:
    """IG's completeness error against gradient passes per image, per rule, and per-image adaptive refinement.

    ``adaptive``: rule -> {steps: the starting points, max_steps: the most an image may take (default:
    the largest of ``steps``)}, for each adaptive rule run at each tolerance (default: the midpoint rule
    from 4 points and ``local`` from 2). Every map is also compared with the map of ``reference_steps``
    midpoint points (``map_error``).
    """
    adaptive = {"midpoint": {"steps": 4}, LOCAL: {"steps": 2}} if adaptive is None else adaptive
    for key, names, choices in (("rules", rules, PATH_RULES), ("adaptive", list(adaptive), (*ADAPTIVE_RULES, LOCAL))):
        if not set(names) <= set(choices):
            raise ValueError(f"config key evaluations.convergence.{key} names {sorted(set(names) - set(choices))}; "
                             f"choose from {list(choices)}")
    for rule, settings in adaptive.items():
        unknown = set(settings) - {"steps", "max_steps"}
        if unknown:
            raise ValueError(f"config key evaluations.convergence.adaptive.{rule} has unknown key(s) {sorted(unknown)}; "
                             "it takes steps and max_steps")
    model, x, target = _predicted(run)
    tables = {}
    for label, baseline in ig_baselines(run, baselines).items():
        reference = integrated_gradients(model, x, target, baseline=baseline, steps=reference_steps, rule=REFERENCE_RULE,
                                         batch_size=run.batch_size)
        parts = [convergence_table(model, x, target, baseline, rules=rules, step_counts=steps, batch_size=run.batch_size,
                                   reference=reference)]
        parts += [adaptive_table(model, x, target, baseline, rule=rule, steps=settings.get("steps", 2),
                                 tolerances=tolerances, max_steps=settings.get("max_steps", max(steps)),
                                 batch_size=run.batch_size, reference=reference) for rule, settings in adaptive.items()]
        tables[label] = pd.concat(parts, ignore_index=True)
    return _per_baseline(tables)


@register_evaluation("path_outputs", columns=("baseline", *PATH_COLUMNS))
def path_outputs_evaluation(run: EvaluationRun, *, points: int = 51, baselines: Sequence[Any] = ()) -> pd.DataFrame:
    """The target logit along IG's straight path from each baseline to the image (saturation)."""
    model, x, target = _predicted(run)
    return _per_baseline({label: path_outputs(model, x, target, baseline, points=points, batch_size=run.batch_size)
                          for label, baseline in ig_baselines(run, baselines).items()})
