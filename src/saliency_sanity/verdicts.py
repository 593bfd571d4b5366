"""Pass/fail verdicts of the sanity checks, with their confidence intervals and the seeds' agreement.

A verdict compares a score's bootstrap confidence interval (:func:`saliency_sanity.statistics.mean_ci`, over
images and seeds) with a threshold tau: for a score that passes when low (a similarity), ``pass`` when the
interval's upper bound is below tau, ``fail`` when its lower bound is at or above tau, ``unclear`` when the
interval contains tau; the other way round for a score that passes when high (eMPRT's entropy rise). A
verdict that is ``pass`` only by its mean would be a coin toss for the next seed.

:func:`verdict_table` turns per-image, per-seed scores into the tidy verdict matrix (:data:`VERDICT_COLUMNS`):
one row per method, baseline, variant, protocol setting and metric, and marks where a setting flips the verdict
that the reference setting gives (``flipped``; ``reversed``: pass <-> fail). Pure pandas, so figures may import it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from saliency_sanity.statistics import CI_LEVEL, N_BOOT, krippendorff_alpha, mean_ci

VERDICTS = ("pass", "unclear", "fail")
ENTROPY = "entropy"  # the metric name of eMPRT's score (a map's own entropy rise, not a similarity)
SCORE_COLUMNS = ("method", "baseline", "variant", "setting", "metric", "seed", "image", "value")
CELL = ("method", "baseline", "variant", "setting", "metric")
VERDICT_COLUMNS = (*CELL, "criterion", "tau", "score", "ci_low", "ci_high", "verdict", "reliability", "n_images",
                   "n_seeds", "reference", "reference_verdict", "flipped", "reversed")


def verdict(low: float, high: float, tau: float, criterion: str) -> str:
    """``pass`` / ``fail`` / ``unclear`` of a confidence interval [low, high] against tau (module docstring)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "unclear"
    if criterion == "below":
        return "pass" if high < tau else "fail" if low >= tau else "unclear"
    if criterion == "above":
        return "pass" if low > tau else "fail" if high <= tau else "unclear"
    raise ValueError(f"criterion {criterion!r}; choose 'below' or 'above'")


def verdict_table(scores: pd.DataFrame, *, criteria: Mapping[str, str], tau: Mapping[str, float], reference: str,
                  level: float = CI_LEVEL, n_boot: int = N_BOOT) -> pd.DataFrame:
    """The verdict matrix of per-image scores (:data:`SCORE_COLUMNS`): ``criteria`` gives each variant's passing
    side, ``tau`` each metric's threshold, ``reference`` the setting whose verdict a flip departs from (a cell of
    a variant that was not run under the reference has no reference verdict and never flips)."""
    missing = sorted(set(scores["metric"]) - set(tau))
    if missing:
        raise ValueError(f"no threshold tau for metric(s) {missing}; set them in evaluations.protocols.tau")
    rows = []
    for cell, group in scores.groupby(list(CELL), sort=False):
        method, baseline, variant, setting, metric = cell
        table = group.pivot_table(index="image", columns="seed", values="value", aggfunc="first", dropna=False)
        values = table.to_numpy(dtype=float)
        score, low, high = mean_ci(values, n_boot=n_boot, level=level)
        criterion = criteria[variant]
        rows.append(dict(zip(CELL, cell), criterion=criterion, tau=float(tau[metric]), score=score, ci_low=low,
                         ci_high=high, verdict=verdict(low, high, tau[metric], criterion),
                         reliability=krippendorff_alpha(values) if values.shape[1] > 1 else np.nan,
                         n_images=int(np.isfinite(values).any(axis=1).sum()), n_seeds=values.shape[1]))
    matrix = pd.DataFrame(rows, columns=[c for c in VERDICT_COLUMNS
                                         if c not in ("reference", "reference_verdict", "flipped", "reversed")])
    matrix["reference"] = reference
    key = ["method", "baseline", "variant", "metric"]
    references = matrix[matrix["setting"] == reference].set_index(key)["verdict"].rename("reference_verdict")
    matrix = matrix.join(references, on=key)
    matrix["flipped"] = matrix["reference_verdict"].notna() & (matrix["verdict"] != matrix["reference_verdict"])
    # a pass turned fail or a fail turned pass, not a move to or from unclear
    matrix["reversed"] = matrix["flipped"] & (matrix["verdict"] != "unclear") & (matrix["reference_verdict"] != "unclear")
    return matrix[list(VERDICT_COLUMNS)]
