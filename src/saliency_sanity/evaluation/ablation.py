"""Ablation tests of the attribution-baselines study (Sturmfels et al., Distill 2020): does removing
what a map ranks highest lower the model's output for the true class?

- **top-k**: the top fraction k of pixels by the map (summed over channels) is replaced;
- **mass-center**: a box of area fraction k centred on the map's centre of mass is replaced;

each with two fills, the image's mean colour (``mean``) or a Gaussian-blurred copy (``blurred``).
The output is the true-class logit of every ablated image, next to the unablated one; the lower the
curve of logit / original against k, the better the map finds what the model uses. The registry's
``random_noise`` control is the article's random-map control. Every ablated copy of an image goes
through the model in batches, never one pixel at a time.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from saliency_sanity.baselines import gaussian_blur
from saliency_sanity.evaluation.registry import EvaluationRun, register_evaluation
from saliency_sanity.methods.completeness import logits_of, target_logits

TESTS = ("top_k", "mass_center")
FILLS = ("mean", "blurred")
RANKINGS = ("signed", "absolute")
ABLATION_COLUMNS = ("method", "baseline", "test", "fill", "fraction", "image", "logit", "original_logit")


def pixel_scores(maps: torch.Tensor, ranking: str) -> torch.Tensor:
    """(B, H, W) importance of each pixel: the map summed over channels, signed (what raises the
    output ranks first) or absolute."""
    if ranking not in RANKINGS:
        raise ValueError(f"unknown ranking {ranking!r}; choose one of {RANKINGS}")
    scores = maps.sum(1)
    return scores.abs() if ranking == "absolute" else scores


def top_k_masks(scores: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """(B, K, H, W) bool: for each fraction k, the round(k * H * W) highest-scoring pixels (ties by position)."""
    batch, height, width = scores.shape
    order = torch.argsort(scores.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(height * width, device=scores.device).expand_as(order))
    counts = torch.tensor([round(k * height * width) for k in fractions], device=scores.device)
    return (rank.unsqueeze(1) < counts.view(1, -1, 1)).view(batch, len(fractions), height, width)


def mass_center_masks(scores: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """(B, K, H, W) bool: for each fraction k, a box of sides round(sqrt(k) H) x round(sqrt(k) W) centred on the
    centre of mass of the positive scores (the image centre where there are none), shifted to lie inside."""
    batch, height, width = scores.shape
    weights = scores.clamp(min=0).double()
    total = weights.sum((1, 2))
    rows = torch.arange(height, device=scores.device, dtype=torch.float64)
    cols = torch.arange(width, device=scores.device, dtype=torch.float64)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    centre_r = torch.where(total > 0, (weights.sum(2) * rows).sum(1) / safe, torch.full_like(total, (height - 1) / 2))
    centre_c = torch.where(total > 0, (weights.sum(1) * cols).sum(1) / safe, torch.full_like(total, (width - 1) / 2))
    masks = torch.zeros(batch, len(fractions), height, width, dtype=torch.bool, device=scores.device)
    for j, k in enumerate(fractions):
        box_h, box_w = round(math.sqrt(k) * height), round(math.sqrt(k) * width)
        top = (centre_r - (box_h - 1) / 2).round().clamp(0, height - box_h).long()
        left = (centre_c - (box_w - 1) / 2).round().clamp(0, width - box_w).long()
        inside_r = (rows.long().view(1, -1) >= top.view(-1, 1)) & (rows.long().view(1, -1) < (top + box_h).view(-1, 1))
        inside_c = (cols.long().view(1, -1) >= left.view(-1, 1)) & (cols.long().view(1, -1) < (left + box_w).view(-1, 1))
        masks[:, j] = inside_r.unsqueeze(2) & inside_c.unsqueeze(1)
    return masks


def fill_values(x: torch.Tensor, fill: str, blur_sigma: float) -> torch.Tensor:
    """What ablated pixels become: the image's per-channel mean, or its blurred copy."""
    if fill == "mean":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True).expand_as(x)
    if fill == "blurred":
        return gaussian_blur(x, blur_sigma)
    raise ValueError(f"unknown ablation fill {fill!r}; choose one of {FILLS}")


def ablated_logits(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor,
    batch_size: int | None = None,
) -> torch.Tensor:
    """(B, K) target logits of x with the pixels of each of its K masks (B, K, H, W) replaced by ``fill``."""
    batch, k = masks.shape[:2]
    ablated = torch.where(masks.unsqueeze(2), fill.unsqueeze(1), x.unsqueeze(1))  # (B, K, C, H, W)
    logits = logits_of(model, ablated.flatten(0, 1), batch_size)
    return target_logits(logits, target.repeat_interleave(k)).view(batch, k)


def ablation_table(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor, *,
    fractions: Sequence[float], fills: Mapping[str, torch.Tensor], tests: Sequence[str] = TESTS,
    ranking: str = "signed", original: torch.Tensor | None = None, batch_size: int | None = None,
) -> pd.DataFrame:
    """Rows (test, fill, fraction, image, logit, original_logit) of one map per image; ``fills``: name ->
    what ablated pixels become (:func:`fill_values`), ``original``: the unablated target logits."""
    scores = pixel_scores(maps, ranking)
    if original is None:
        original = target_logits(logits_of(model, x, batch_size), target)
    frames = []
    for test in tests:
        if test not in TESTS:
            raise ValueError(f"unknown ablation test {test!r}; choose one of {TESTS}")
        masks = (top_k_masks if test == "top_k" else mass_center_masks)(scores, fractions)
        for fill, values in fills.items():
            logits = ablated_logits(model, x, target, masks, values, batch_size)
            images, steps = torch.meshgrid(torch.arange(len(x)), torch.arange(len(fractions)), indexing="ij")
            frames.append(pd.DataFrame({
                "test": test, "fill": fill, "fraction": [fractions[j] for j in steps.flatten().tolist()],
                "image": images.flatten().tolist(), "logit": logits.flatten().tolist(),
                "original_logit": original[images.flatten()].tolist(),
            }))
    return pd.concat(frames, ignore_index=True)


@register_evaluation("ablation", columns=ABLATION_COLUMNS)
def ablation(
    run: EvaluationRun, *, fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    fills: Sequence[str] = FILLS, blur_sigma: float = 20.0, ranking: str = "signed", baselines: Sequence[Any] = (),
) -> pd.DataFrame:
    """Top-k and mass-center ablation of every method (and path method per baseline) on the correctly
    classified test images, for the true class."""
    if not fractions or not all(0 < k <= 1 for k in fractions):
        raise ValueError(f"config key evaluations.ablation.fractions must list numbers in (0, 1], got {list(fractions)}")
    for key, values, choices in (("fills", fills, FILLS), ("ranking", [ranking], RANKINGS)):
        if not values or not set(values) <= set(choices):
            raise ValueError(f"config key evaluations.ablation.{key} is {values!r}; choose from {list(choices)}")
    model, test_images, labels = run.job.model, run.job.examples.images, run.job.examples.labels
    correct = logits_of(model, test_images, run.batch_size).argmax(1) == labels
    if not correct.any():
        raise ValueError(f"the ablation tests use correctly classified images, and {run.job.name} classifies none of "
                         f"its first {len(test_images)} test images correctly")
    x, target = test_images[correct], labels[correct]
    ids = torch.nonzero(correct).flatten().cpu().numpy()  # test-set indices of the images kept
    filled = {fill: fill_values(x, fill, blur_sigma) for fill in fills}  # the same for every map
    original = target_logits(logits_of(model, x, run.batch_size), target)
    frames = []
    for method, baseline, images, maps in run.explain(x, target, baselines):
        table = ablation_table(model, x[images], target[images], maps, fractions=fractions,
                               fills={fill: values[images] for fill, values in filled.items()}, ranking=ranking,
                               original=original[images], batch_size=run.batch_size)
        table["image"] = ids[images][table["image"].to_numpy()]
        frames.append(table.assign(method=method, baseline=baseline)[list(ABLATION_COLUMNS)])
    return pd.concat(frames, ignore_index=True)
