"""Does a model trained on a dataset with a planted shortcut (decoy MNIST, class-noise MNIST) rely on
it, and which maps show it? (The attribution-baselines study's decoy experiment; Ross et al. 2017.)

On the first test images, under three conditions of the planted code
(:data:`~saliency_sanity.data.decoy.SHORTCUTS`): ``true_code`` (the image's own class, as in
training), ``random_code`` (a random class: the test split as distributed) and ``no_code`` (plain
MNIST): whether the model is right (measure ``correct``). Then, on the true-code images, for the
predicted class, the share of each map's absolute mass on the shortcut's pixels (``mass_on_shortcut``)
for every method, and every path method per baseline; ``area`` is the share of pixels the shortcut
takes, what a map blind to it would put there on average. The archive keeps the first
:data:`SHOWN_IMAGES` true-code images, their code's pixels (``mask``) and every series' map (absolute,
divided by its maximum), for the figure of the maps next to the code.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from saliency_sanity.data import load_examples
from saliency_sanity.data.decoy import SHORTCUTS, planted_classes
from saliency_sanity.evaluation.registry import EvaluationRun, register_evaluation
from saliency_sanity.contracts import NO_BASELINE
from saliency_sanity.methods.completeness import logits_of

CONDITIONS = ("true_code", "random_code", "no_code")
SHOWN_IMAGES = 4  # true-code images whose maps the archive keeps for the figures
SHORTCUT_COLUMNS = ("measure", "condition", "method", "baseline", "image", "value")


def mass_on(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) share of each map's absolute mass inside ``mask`` (0 for an all-zero map)."""
    mass = maps.abs().flatten(1)
    total = mass.sum(1)
    inside = (mass * mask.flatten(1)).sum(1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(total))


def _rows(measure: str, condition: str, values: torch.Tensor, method: str = NO_BASELINE,
          baseline: str = NO_BASELINE, first: int = 0) -> pd.DataFrame:
    values = values.double().cpu()
    return pd.DataFrame({"measure": measure, "condition": condition, "method": method, "baseline": baseline,
                         "image": range(first, first + len(values)), "value": values.numpy()})


@register_evaluation("shortcut", columns=SHORTCUT_COLUMNS, datasets=tuple(SHORTCUTS))
def shortcut(run: EvaluationRun, *, baselines: Sequence[Any] = ()) -> pd.DataFrame:
    """Accuracy with the planted code true, random and absent; each map's share of mass on the code's pixels."""
    job = run.job
    n = len(job.examples.images)
    base = load_examples("mnist", "test", replace(job.source, options={}, n=n))
    labels = base.labels
    plant = SHORTCUTS[job.dataset]
    codes = {"true_code": labels, "random_code": planted_classes(labels, "test", job.source.seed, job.dataset)}
    images = {condition: plant(base.images, code, job.source.seed, "test") for condition, code in codes.items()}
    mask = images["true_code"][1].to(job.device)
    inputs = {"true_code": images["true_code"][0], "random_code": images["random_code"][0], "no_code": base.images}
    frames = []
    for condition in CONDITIONS:
        x = inputs[condition].to(job.device)
        predicted = logits_of(job.model, x, run.batch_size).argmax(1)
        frames.append(_rows("correct", condition, (predicted == labels.to(job.device)).double()))
    frames.append(_rows("area", "true_code", mask.flatten(1).double().mean(1)))
    x = inputs["true_code"].to(job.device)
    target = logits_of(job.model, x, run.batch_size).argmax(1)
    shown = min(SHOWN_IMAGES, n)
    series, kept = [], []
    for method, baseline, images, maps in run.explain(x, target, baselines):
        frames.append(_rows("mass_on_shortcut", "true_code", mass_on(maps, mask[images]), method, baseline, images.start))
        if images.start == 0:  # the first call holds the shown images (IMAGES_PER_CALL >= SHOWN_IMAGES)
            series.append((method, baseline))
            kept.append(_normalized_absolute(maps[:shown]))
    run.keep(images=x[:shown], mask=mask[:shown, 0], labels=labels[:shown], predicted=target[:shown],
             methods=np.array([m for m, _ in series], dtype=str), baselines=np.array([b for _, b in series], dtype=str),
             maps=torch.stack(kept).half())
    return pd.concat(frames, ignore_index=True)[list(SHORTCUT_COLUMNS)]


def _normalized_absolute(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W): each map's absolute values summed over channels, divided by its maximum (an all-zero map stays 0)."""
    absolute = maps.abs().sum(1)
    peak = absolute.flatten(1).amax(1).clamp_min(torch.finfo(absolute.dtype).tiny)
    return absolute / peak.view(-1, 1, 1)
