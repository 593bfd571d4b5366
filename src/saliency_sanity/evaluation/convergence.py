"""How fast Integrated Gradients converges: completeness error against passes, per quadrature rule,
and the target logit along the path (saturation), for the attribution-baselines study.

Each (rule, steps) is one IG computation; its cost is ``steps`` gradient passes per image, the
x-axis of the study. The error is :func:`~saliency_sanity.methods.completeness.completeness_error`.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from saliency_sanity.methods.completeness import completeness_error, logits_of, target_logits
from saliency_sanity.methods.gradients import integrated_gradients

CONVERGENCE_COLUMNS = ("rule", "steps", "image", "error")
PATH_COLUMNS = ("image", "alpha", "logit")


def convergence_table(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor, *,
    rules: Sequence[str], step_counts: Sequence[int], batch_size: int | None = None,
) -> pd.DataFrame:
    """One row per (rule, steps, image): IG's completeness error with that many path points."""
    f_x = target_logits(logits_of(model, x, batch_size), target)
    f_base = target_logits(logits_of(model, baseline, batch_size), target)
    rows = []
    with tqdm(total=len(rules) * sum(step_counts), desc="IG convergence", unit="step") as progress:
        for rule in rules:
            for steps in step_counts:
                maps = integrated_gradients(model, x, target, baseline=baseline, steps=steps, rule=rule,
                                            batch_size=batch_size)
                errors = completeness_error(maps, f_x, f_base).tolist()
                rows += [(rule, steps, image, error) for image, error in enumerate(errors)]
                progress.update(steps)
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
