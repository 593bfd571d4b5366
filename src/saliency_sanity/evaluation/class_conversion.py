"""DeepLIFT's MNIST class-conversion experiment (Shrikumar et al. 2017, Fig. 5): which pixels must be
erased to turn a digit of class c0 into class ct?

For each task (c0, ct) the first test images of class c0 that the model classifies as c0 are explained
for both classes by every configured method. Pixels are ranked by S_c0 - S_ct (summed over channels;
positive differences only), the top ``erased`` of them (157, a fifth of a 28 x 28 image, as in the paper)
are set to the reference (zero, black), and the table gives the log-odds of c0 against ct
(logit_c0 - logit_ct) before and after, and their drop: the larger the drop, the better the map found
what separates the two classes. The paper reports RevealCancel ahead of Rescale, gradient x input and IG.

A method entry is a registered method's name, or a mapping ``{method: <name>, label: <column value>,
transform: absolute | times_input, <its parameters>}``: the paper's |gradient|, guided backprop x input
and IG with 5 and 10 steps are entries of this kind (``transform`` acts on each class's map before the
difference). The archive keeps each task's first image with every method's difference map and the
erased pixels, for the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from saliency_sanity.evaluation.registry import EvaluationRun, register_evaluation
from saliency_sanity.methods.completeness import logits_of
from saliency_sanity.methods.registry import METHODS, BoundMethod

CONVERSION_COLUMNS = ("task", "source_class", "target_class", "method", "label", "image", "erased",
                      "log_odds_before", "log_odds_after", "log_odds_drop")
TRANSFORMS = ("absolute", "times_input")
DEFAULT_TASKS = ((8, 3), (8, 6), (9, 1), (4, 1))
DEFAULT_METHODS: tuple[Any, ...] = (
    {"method": "gradient", "label": "|gradient|", "transform": "absolute"},
    "guided_backprop",
    {"method": "guided_backprop", "label": "guided_backprop x input", "transform": "times_input"},
    "gradient_x_input",
    {"method": "integrated_gradients", "label": "integrated_gradients (5 steps)", "steps": 5},
    {"method": "integrated_gradients", "label": "integrated_gradients (10 steps)", "steps": 10},
    "deeplift_rescale",
    "deeplift_revealcancel",
)


@dataclass(frozen=True)
class ScoredMethod:
    """A method as this experiment scores pixels with it: the bound method, a label and a transform."""

    method: str
    label: str
    bound: BoundMethod
    transform: str | None

    @classmethod
    def parse(cls, entry: str | Mapping[str, Any], run: EvaluationRun, where: str) -> ScoredMethod:
        spec = {"method": entry} if isinstance(entry, str) else dict(entry)
        if "method" not in spec:
            raise ValueError(f"{where} entry {entry!r} has no 'method'; write e.g. {{method: gradient, transform: absolute}}")
        name, label, transform = spec.pop("method"), spec.pop("label", None), spec.pop("transform", None)
        if transform not in (None, *TRANSFORMS):
            raise ValueError(f"{where}: unknown transform {transform!r} for {name}; choose one of {TRANSFORMS}")
        method = METHODS.get_entry(name, where)
        return cls(name, label or name, method.bind(spec, run.harness.context), transform)

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps = self.bound(model, x, target)
        if self.transform == "absolute":
            return maps.abs()
        return maps * x if self.transform == "times_input" else maps


def erasure_masks(scores: torch.Tensor, erased: int) -> torch.Tensor:
    """(B, *spatial) bool: each image's ``erased`` highest positive scores (fewer where fewer are positive)."""
    flat = scores.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)[:, :erased]
    chosen = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
    return (chosen & (flat > 0)).view_as(scores)


def log_odds(model: torch.nn.Module, x: torch.Tensor, source: int, target: int, batch_size: int | None) -> torch.Tensor:
    logits = logits_of(model, x, batch_size)
    return logits[:, source] - logits[:, target]


@dataclass(frozen=True)
class Conversion:
    """One task's outcome for one method: S_c0 - S_ct (B, *spatial), the erased pixels, the log-odds after."""

    difference: torch.Tensor
    erased: torch.Tensor
    log_odds_after: torch.Tensor


def convert(model: torch.nn.Module, x: torch.Tensor, source: int, target: int, method: ScoredMethod, erased: int,
            batch_size: int | None) -> Conversion:
    """Erase (set to zero, the reference) the ``erased`` pixels of ``x`` that ``method`` ranks highest by
    S_source - S_target, and the log-odds of source against target afterwards."""
    classes = [torch.full((len(x),), c, dtype=torch.long, device=x.device) for c in (source, target)]
    difference = (method(model, x, classes[0]) - method(model, x, classes[1])).sum(1)
    mask = erasure_masks(difference, erased)
    after = log_odds(model, torch.where(mask.unsqueeze(1), torch.zeros_like(x), x), source, target, batch_size)
    return Conversion(difference, mask, after)


@register_evaluation("class_conversion", columns=CONVERSION_COLUMNS, datasets=("mnist",))
def class_conversion(run: EvaluationRun, *, tasks: Sequence[Sequence[int]] = DEFAULT_TASKS, erased: int = 157,
                     per_task: int = 100, methods: Sequence[str | Mapping[str, Any]] = DEFAULT_METHODS) -> pd.DataFrame:
    """The drop in the log-odds of c0 against ct when the pixels a map ranks by S_c0 - S_ct are erased."""
    job, model = run.job, run.job.model
    scored = [ScoredMethod.parse(entry, run, "evaluations.class_conversion.methods") for entry in methods]
    images, labels = job.examples.images.to(job.device), job.examples.labels.to(job.device)
    logits = logits_of(model, images, run.batch_size)  # the images' logits, once: the choice and the log-odds before
    predicted = logits.argmax(1)
    frames, kept = [], {}
    for source, target in tasks:
        task = f"{source}->{target}"
        chosen = torch.nonzero((labels == source) & (predicted == source)).flatten()[:per_task]
        if len(chosen) == 0:
            raise ValueError(f"evaluations.class_conversion: no test image of class {source} among the first "
                             f"{len(images)} is classified as {source}; raise n_images")
        x = images[chosen]
        before = logits[chosen, source] - logits[chosen, target]
        differences, masks = [], []
        for method in scored:
            result = convert(model, x, source, target, method, erased, run.batch_size)
            frames.append(pd.DataFrame({
                "task": task, "source_class": source, "target_class": target, "method": method.method,
                "label": method.label, "image": chosen.cpu().numpy(),
                "erased": result.erased.flatten(1).sum(1).cpu().numpy(),
                "log_odds_before": before.double().cpu().numpy(),
                "log_odds_after": result.log_odds_after.double().cpu().numpy(),
                "log_odds_drop": (before - result.log_odds_after).double().cpu().numpy()}))
            differences.append(result.difference[0])
            masks.append(result.erased[0])
        kept[task] = (x[0], torch.stack(differences), torch.stack(masks))
    run.keep(tasks=np.array(list(kept), dtype=str), methods=np.array([m.method for m in scored], dtype=str),
             labels=np.array([m.label for m in scored], dtype=str),
             images=torch.stack([v[0] for v in kept.values()]), differences=torch.stack([v[1] for v in kept.values()]),
             erased=torch.stack([v[2] for v in kept.values()]))
    return pd.concat(frames, ignore_index=True)[list(CONVERSION_COLUMNS)]
