"""The linear-model check on MNIST: closed forms, input dominance and the randomization test.

A softmax-linear classifier f_c(x) = w_c . x + b_c is trained for a few hundred steps; its
weights are then re-initialized (the cascading randomization of its one block). For both weights
and each of ``METHODS`` the analysis records, per test image:

- ``agreement``: the registry's map vs the closed form (gradient = w_c, gradient x input =
  IG(zero baseline) = w_c * x), metrics ``max_abs_error`` and ``rel_error``; and, for the
  gradient, ``max_abs_diff_same_target``: the largest difference to the gradient map of any other
  image explained for the same class (0 when the gradient does not depend on the input; NaN when
  no other image has that target);
- ``input``: Spearman correlation of the map with the input itself (absolute and signed maps);
- ``randomization``: Spearman correlation of the trained model's map with the random model's
  (rows with weights ``random``), as in the paper's randomization tests.

Columns of ``linear.csv`` (:data:`LINEAR_COLUMNS`): analysis, weights (trained | random),
method, reference (closed_form | other_inputs | input | trained), metric, image (index in the
test set), target (the class explained: the model's own prediction), value.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from saliency_sanity.data import load_split
from saliency_sanity.config import config_value, positive_float, positive_int
from saliency_sanity.randomization import cascading
from saliency_sanity.runtime import derive_seed, write_npz
from saliency_sanity.theory.closed_forms import LINEAR_FORMS, relative_error
from saliency_sanity import similarity
from saliency_sanity.theory.common import (
    explain,
    write_csv,
)
from saliency_sanity.theory.models import LinearModel

log = logging.getLogger(__name__)

METHODS = ("gradient", "gradient_x_input", "integrated_gradients")
WEIGHTS = ("trained", "random")
LINEAR_COLUMNS = ["analysis", "weights", "method", "reference", "metric", "image", "target", "value"]
TRAINING_COLUMNS = ["model", "seed", "steps", "batch_size", "lr", "train_acc", "test_acc", "wall_seconds"]
N_MAP_IMAGES = 4  # images whose maps go into linear_maps.npz (the figure's rows)
OUTPUTS = {"csv": "linear.csv", "training": "linear_training.csv", "maps": "linear_maps.npz"}


@dataclass(frozen=True)
class LinearSettings:
    seed: int
    steps: int
    batch_size: int
    lr: float
    n_images: int
    ig_steps: int
    normalization: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LinearSettings:
        linear = config_value(config, "theory.linear")
        where = "theory.linear"
        return cls(
            seed=int(config.get("seed", 0)),
            steps=positive_int(linear.get("steps"), f"{where}.steps"),
            batch_size=positive_int(linear.get("batch_size"), f"{where}.batch_size"),
            lr=positive_float(linear.get("lr"), f"{where}.lr"),
            n_images=positive_int(linear.get("n_images"), f"{where}.n_images"),
            ig_steps=positive_int(linear.get("ig_steps"), f"{where}.ig_steps"),
            normalization=(config.get("similarity") or {}).get("normalization") or "max",
        )


def train_linear(
    model: LinearModel, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch_size: int, lr: float, seed: int
) -> None:
    """Adam on the cross-entropy, ``steps`` minibatches drawn with a seeded generator."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "theory", "linear", "batches"))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The argmax class: what each map explains (the paper's choice: the model's own prediction)."""
    return model(images).argmax(dim=1)


def _rows(analysis: str, weights: str, method: str, reference: str, metric: str,
          values: np.ndarray, targets: np.ndarray) -> list[dict]:
    return [
        dict(analysis=analysis, weights=weights, method=method, reference=reference, metric=metric,
             image=i, target=int(t), value=float(v))
        for i, (v, t) in enumerate(zip(values, targets))
    ]


def _same_target_spread(maps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per image: max |map_i - map_j| over the other images j explained for the same class."""
    flat = maps.reshape(len(maps), -1)
    spread = np.full(len(maps), np.nan)
    for i in range(len(maps)):
        others = np.flatnonzero((targets == targets[i]) & (np.arange(len(maps)) != i))
        if others.size:
            spread[i] = np.abs(flat[others] - flat[i]).max()
    return spread


def analyse_weights(
    weights_name: str, model: LinearModel, x: torch.Tensor, settings: LinearSettings
) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict]]:
    """Targets, each method's maps and the agreement + input rows for one set of weights."""
    targets = predict(model, x)
    w = model.logits.weight.detach().numpy()
    xs, ts = x.numpy(), targets.numpy()
    maps, rows = {}, []
    for method in METHODS:
        computed = explain(method, model, x, targets, ig_steps=settings.ig_steps, seed=settings.seed).numpy()
        expected = LINEAR_FORMS[method](w, xs, ts)
        maps[method] = computed
        errors = np.abs(computed - expected).reshape(len(xs), -1).max(axis=1)
        rel = np.array([relative_error(c, e) for c, e in zip(computed, expected)])
        rows += _rows("agreement", weights_name, method, "closed_form", "max_abs_error", errors, ts)
        rows += _rows("agreement", weights_name, method, "closed_form", "rel_error", rel, ts)
        if method == "gradient":
            spread = _same_target_spread(computed, ts)
            rows += _rows("agreement", weights_name, method, "other_inputs", "max_abs_diff_same_target", spread, ts)
        for metric, values in similarity.spearman_to(computed, xs, settings.normalization).items():
            rows += _rows("input", weights_name, method, "input", metric, values, ts)
    return ts, maps, rows


def run_linear(config: Mapping[str, Any], data_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Train the MNIST softmax-linear model, run the checks, write OUTPUTS into ``out_dir``."""
    settings = LinearSettings.from_config(config)
    start = time.perf_counter()
    train_x, train_y = load_split("mnist", data_dir, "train")
    test_x, test_y = load_split("mnist", data_dir, "test")
    if settings.n_images > len(test_x):
        raise ValueError(f"theory.linear.n_images is {settings.n_images}; the MNIST test split has {len(test_x)}")
    model = LinearModel()
    model.reset_parameters(torch.Generator().manual_seed(derive_seed(settings.seed, "theory", "linear", "init")))
    train_linear(model, train_x, train_y, steps=settings.steps, batch_size=settings.batch_size,
                 lr=settings.lr, seed=settings.seed)
    train_acc = float((predict(model, train_x) == train_y).float().mean())
    test_acc = float((predict(model, test_x) == test_y).float().mean())
    log.info("linear model: train accuracy %.4f, test accuracy %.4f", train_acc, test_acc)

    x = test_x[: settings.n_images]
    stages = {name: stage_model for _, name, stage_model in cascading(model, settings.seed)}
    results = {
        weights: analyse_weights(weights, stage_model, x, settings)
        for weights, stage_model in zip(WEIGHTS, (stages["original"], stages["logits"]))
    }
    rows = [row for _, _, weight_rows in results.values() for row in weight_rows]
    random_targets = results["random"][0]
    for method in METHODS:
        scores = similarity.spearman_to(results["trained"][1][method], results["random"][1][method], settings.normalization)
        for metric, values in scores.items():
            rows += _rows("randomization", "random", method, "trained", metric, values, random_targets)

    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in OUTPUTS.items()}
    write_csv(paths["csv"], pd.DataFrame(rows, columns=LINEAR_COLUMNS))
    training = dict(model="mnist-linear", seed=settings.seed, steps=settings.steps, batch_size=settings.batch_size,
                    lr=settings.lr, train_acc=train_acc, test_acc=test_acc,
                    wall_seconds=round(time.perf_counter() - start, 2))
    write_csv(paths["training"], pd.DataFrame([training], columns=TRAINING_COLUMNS))
    shown = map_images(results["trained"][0], N_MAP_IMAGES)
    write_npz(paths["maps"], {
        "image_ids": shown,
        "images": x[shown].numpy(),
        "labels": test_y[shown].numpy(),
        "weights": np.array(WEIGHTS),
        "methods": np.array(METHODS),
        "targets": np.stack([results[w][0][shown] for w in WEIGHTS]),
        "maps": np.stack([np.stack([results[w][1][m][shown] for m in METHODS]) for w in WEIGHTS]).astype(np.float32),
        "test_acc": np.array(test_acc),
    })
    return paths


def map_images(targets: np.ndarray, n: int) -> np.ndarray:
    """Indices of the images to show: image 0, the next image with its target, then the first others.

    Two images explained for the same class make the input-independence of the gradient visible.
    """
    same = np.flatnonzero(targets == targets[0])[1:2]
    rest = [i for i in range(1, len(targets)) if i not in same]
    return np.array(([0] + same.tolist() + rest)[:n], dtype=np.int64)
