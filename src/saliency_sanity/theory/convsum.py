"""The 1-D conv + ReLU + sum-pooling model: closed forms vs the registry, and the filter sweep.

Agreement (``convsum_agreement.csv``, :data:`AGREEMENT_COLUMNS`): on random instances (random
number of filters, width, channels, length, scale and offset; Gaussian filters and signals),
each method of :data:`~saliency_sanity.theory.closed_forms.CONVSUM_FORMS` computed by the
registry in float64 and in float32 vs its closed form evaluated in float64 from the same
(rounded) weights and signals. Columns: instance, dtype, n_filters, width, channels, length,
scale, method, metric (``max_abs_error`` | ``rel_error``), value, tolerance (the stated
relative tolerance of the dtype; a blank on ``max_abs_error`` rows).

Filter sweep (``convsum_filters.csv``, :data:`FILTER_COLUMNS`): for each seed and number of
filters J, a model with J random filters (scale 1/J, offset at the median output) and the same
model trained on the bump task (:mod:`saliency_sanity.theory.signals`). Each method's maps of
held-out signals are compared with the input (``reference`` = ``input``), with the edge
detector of the input (``edges``: the registry's ``sobel`` control, the signed derivative of a
1-D signal), with the method's many-random-filters limit where the theory gives one
(``limit``: :data:`~saliency_sanity.theory.closed_forms.CONVSUM_LIMITS`, e.g. the locally
normalized input for the gradient) and, for trained filters, with the same method's maps for the random filters they
started from (``random_filters``). Columns: seed, n_filters, filters (random | trained),
method, reference, metric (spearman_abs | spearman_signed), signal, value.

Training (``convsum_training.csv``, :data:`TRAINING_COLUMNS`): seed, n_filters, steps,
filter_change (||W_trained - W_random|| / ||W_random||), random_train_acc, random_test_acc
(the random filters with a fitted offset only), train_acc, test_acc.

Maps (``convsum_maps.npz``): the first seed's first few signals, their edge maps, and every
method's maps for random and trained filters at every J, with the largest model's filters.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from saliency_sanity.methods.registry import get_method
from saliency_sanity.config import config_value, positive_float, positive_int
from saliency_sanity.runtime import derive_seed, write_npz
from saliency_sanity.theory.closed_forms import CONVSUM_FORMS, CONVSUM_LIMITS, TOLERANCE, relative_error
from saliency_sanity import similarity
from saliency_sanity.theory.common import (
    explain,
    write_csv,
)
from saliency_sanity.theory.models import ConvSumModel
from saliency_sanity.theory.signals import SignalSpec, make_signals

log = logging.getLogger(__name__)

AGREEMENT_COLUMNS = ["instance", "dtype", "n_filters", "width", "channels", "length", "scale",
                     "method", "metric", "value", "tolerance"]
FILTER_COLUMNS = ["seed", "n_filters", "filters", "method", "reference", "metric", "signal", "value"]
TRAINING_COLUMNS = ["seed", "n_filters", "steps", "filter_change", "random_train_acc", "random_test_acc",
                    "train_acc", "test_acc"]
FILTERS = ("random", "trained")
EDGE_METHOD = "sobel"
N_MAP_SIGNALS = 3
DTYPES = {"float64": torch.float64, "float32": torch.float32}
OUTPUTS = {
    "agreement": "convsum_agreement.csv",
    "filters": "convsum_filters.csv",
    "training": "convsum_training.csv",
    "maps": "convsum_maps.npz",
}


@dataclass(frozen=True)
class ConvSumSettings:
    seed: int
    seeds: tuple[int, ...]
    filter_counts: tuple[int, ...]
    width: int
    length: int
    n_signals: int
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float
    methods: tuple[str, ...]
    agreement_instances: int
    ig_steps: int
    normalization: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ConvSumSettings:
        conv = config_value(config, "theory.convsum")
        where = "theory.convsum"
        settings = cls(
            seed=int(config.get("seed", 0)),
            seeds=tuple(int(s) for s in conv.get("seeds") or ()),
            filter_counts=tuple(sorted({int(j) for j in conv.get("filter_counts") or ()})),
            width=positive_int(conv.get("filter_width"), f"{where}.filter_width"),
            length=positive_int(conv.get("signal_length"), f"{where}.signal_length"),
            n_signals=positive_int(conv.get("n_signals"), f"{where}.n_signals"),
            n_train=positive_int(conv.get("n_train"), f"{where}.n_train"),
            n_test=positive_int(conv.get("n_test"), f"{where}.n_test"),
            steps=positive_int(conv.get("steps"), f"{where}.steps"),
            batch_size=positive_int(conv.get("batch_size"), f"{where}.batch_size"),
            lr=positive_float(conv.get("lr"), f"{where}.lr"),
            methods=tuple(conv.get("methods") or ()),
            agreement_instances=positive_int(conv.get("agreement_instances"), f"{where}.agreement_instances"),
            ig_steps=positive_int(conv.get("ig_steps"), f"{where}.ig_steps"),
            normalization=(config.get("similarity") or {}).get("normalization") or "max",
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not self.seeds or not self.filter_counts or min(self.filter_counts) < 1:
            raise ValueError("config keys theory.convsum.seeds and .filter_counts need at least one value (counts >= 1)")
        if not self.methods:
            raise ValueError("config key theory.convsum.methods needs at least one registered method")
        for name in self.methods:
            if get_method(name).model_free:
                raise ValueError(f"theory.convsum.methods lists {name!r}, a model-free control; the edge reference is built in")
        if self.length < self.width or self.n_signals > self.n_test:
            raise ValueError(
                f"theory.convsum: need filter_width <= signal_length and n_signals <= n_test, got "
                f"{self.width} > {self.length} or {self.n_signals} > {self.n_test}"
            )


# --------------------------------------------------------------------------- agreement


def random_instance(seed: int, index: int) -> tuple[ConvSumModel, torch.Tensor]:
    """A float64 conv-sum model with random shape, scale and offset, and 3 Gaussian signals."""
    rng = np.random.default_rng(derive_seed(seed, "convsum", "instance", index))
    n_filters, width, channels = int(rng.integers(1, 65)), int(rng.integers(1, 10)), int(rng.integers(1, 3))
    length = width + int(rng.integers(0, 40))
    model = ConvSumModel(n_filters, width, channels, scale=float(rng.uniform(0.1, 2.0))).double()
    model.init_block("conv", torch.Generator().manual_seed(derive_seed(seed, "convsum", "instance", index, "filters")))
    with torch.no_grad():
        model.offset.fill_(float(rng.normal()))
    x = torch.from_numpy(rng.standard_normal((3, channels, length)))
    return model.eval(), x


def agreement_rows(model: ConvSumModel, x: torch.Tensor, *, instance: int, ig_steps: int, seed: int) -> list[dict]:
    """Every closed-form method, in float64 and float32, vs its closed form (float64 arithmetic)."""
    rows = []
    n_filters, channels, width = model.filters.shape
    shape = dict(instance=instance, n_filters=n_filters, width=width, channels=channels, length=x.shape[-1],
                 scale=float(model.scale))
    target = torch.zeros(len(x), dtype=torch.long)
    for dtype_name, dtype in DTYPES.items():
        m, xs = copy.deepcopy(model).to(dtype), x.to(dtype)
        filters = m.filters.detach().double().numpy()
        signals = xs.double().numpy()
        for method, form in CONVSUM_FORMS.items():
            computed = explain(method, m, xs, target, ig_steps=ig_steps, seed=seed).double().numpy()
            expected = form(filters, signals, float(m.scale))
            common = dict(shape, dtype=dtype_name, method=method)
            rows.append(dict(common, metric="max_abs_error", value=float(np.abs(computed - expected).max()),
                             tolerance=np.nan))
            rows.append(dict(common, metric="rel_error", value=relative_error(computed, expected),
                             tolerance=TOLERANCE[dtype_name]))
    return rows


def agreement_table(settings: ConvSumSettings) -> pd.DataFrame:
    rows = []
    for index in range(settings.agreement_instances):
        model, x = random_instance(settings.seed, index)
        rows += agreement_rows(model, x, instance=index, ig_steps=settings.ig_steps, seed=settings.seed)
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def calibrate_offset(model: ConvSumModel, signals: torch.Tensor) -> None:
    """Set the offset to the median output, so half the signals fall on each side of it."""
    model.offset.fill_(float((model(signals)[:, 0] + model.offset).median()))


@torch.no_grad()
def accuracy(model: ConvSumModel, signals: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary accuracy: class 1 (bump) where the output is positive."""
    return float(((model(signals)[:, 0] > 0).long() == labels).float().mean())


def train_convsum(
    model: ConvSumModel, signals: torch.Tensor, labels: torch.Tensor, *, steps: int, batch_size: int, lr: float,
    seed: int,
) -> None:
    """Adam on the logistic loss of the bump task; minibatches from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(signals), (batch_size,), generator=generator)
        loss = nn.functional.binary_cross_entropy_with_logits(model(signals[index])[:, 0], labels[index].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


# --------------------------------------------------------------------------- filter sweep


def edge_maps(x: torch.Tensor) -> torch.Tensor:
    """The registry's model-free edge detector of the signals (it ignores the model)."""
    return get_method(EDGE_METHOD)(nn.Identity(), x, torch.zeros(len(x), dtype=torch.long))


def _score_rows(key: dict, maps: np.ndarray, reference: np.ndarray, name: str, normalization: str) -> list[dict]:
    rows = []
    for metric, values in similarity.spearman_to(maps, reference, normalization).items():
        rows += [dict(key, reference=name, metric=metric, signal=i, value=float(v)) for i, v in enumerate(values)]
    return rows


@dataclass
class SweepResult:
    filters: pd.DataFrame
    training: pd.DataFrame
    maps: dict[str, np.ndarray]


def filter_sweep(settings: ConvSumSettings) -> SweepResult:
    """Random vs trained filters, for every seed and number of filters (see the module doc)."""
    spec = SignalSpec(length=settings.length)
    rows, training, shown, shown_signals = [], [], {}, None
    for seed in settings.seeds:
        train_x, train_y = make_signals(settings.n_train, derive_seed(seed, "convsum", "train"), spec)
        test_x, test_y = make_signals(settings.n_test, derive_seed(seed, "convsum", "test"), spec)
        x = test_x[: settings.n_signals]
        target = torch.zeros(len(x), dtype=torch.long)
        edges = edge_maps(x).numpy()
        limits = {m: CONVSUM_LIMITS[m](x.numpy(), settings.width) for m in settings.methods if m in CONVSUM_LIMITS}
        for n_filters in settings.filter_counts:
            models = _random_and_trained(settings, seed, n_filters, train_x, train_y)
            training.append(_training_row(settings, seed, n_filters, models, (train_x, train_y), (test_x, test_y)))
            maps = {
                (filters, method): explain(method, model, x, target, ig_steps=settings.ig_steps, seed=seed).numpy()
                for filters, model in models.items() for method in settings.methods
            }
            for (filters, method), m in maps.items():
                key = dict(seed=seed, n_filters=n_filters, filters=filters, method=method)
                rows += _score_rows(key, m, x.numpy(), "input", settings.normalization)
                rows += _score_rows(key, m, edges, "edges", settings.normalization)
                if method in limits:
                    rows += _score_rows(key, m, limits[method], "limit", settings.normalization)
                if filters == "trained":
                    rows += _score_rows(key, m, maps["random", method], "random_filters", settings.normalization)
            if seed == settings.seeds[0]:
                shown[n_filters] = (maps, models)
                shown_signals = (x, test_y[: len(x)])
        log.info("seed %d: %d filter counts done", seed, len(settings.filter_counts))
    return SweepResult(
        filters=pd.DataFrame(rows, columns=FILTER_COLUMNS),
        training=pd.DataFrame(training, columns=TRAINING_COLUMNS),
        maps=_maps_payload(settings, shown, *shown_signals, settings.seeds[0]),
    )


def _random_and_trained(
    settings: ConvSumSettings, seed: int, n_filters: int, train_x: torch.Tensor, train_y: torch.Tensor
) -> dict[str, ConvSumModel]:
    random = ConvSumModel(n_filters, settings.width, scale=1.0 / n_filters)
    random.init_block("conv", torch.Generator().manual_seed(derive_seed(seed, "convsum", "filters", n_filters)))
    calibrate_offset(random, train_x)
    trained = copy.deepcopy(random)
    train_convsum(trained, train_x, train_y, steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                  seed=derive_seed(seed, "convsum", "batches", n_filters))
    return {"random": random.eval(), "trained": trained}


def _training_row(
    settings: ConvSumSettings, seed: int, n_filters: int, models: dict[str, ConvSumModel],
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
) -> dict:
    w0, w1 = (models[f].filters.detach() for f in FILTERS)
    return dict(
        seed=seed, n_filters=n_filters, steps=settings.steps,
        filter_change=float((w1 - w0).norm() / w0.norm()),
        random_train_acc=accuracy(models["random"], *train), random_test_acc=accuracy(models["random"], *test),
        train_acc=accuracy(models["trained"], *train), test_acc=accuracy(models["trained"], *test),
    )


def _maps_payload(settings: ConvSumSettings, shown: dict, signals: torch.Tensor, labels: torch.Tensor,
                  seed: int) -> dict[str, np.ndarray]:
    k = min(N_MAP_SIGNALS, settings.n_signals)
    counts = list(settings.filter_counts)
    maps = np.stack([
        np.stack([np.stack([shown[j][0][f, m][:k] for m in settings.methods]) for f in FILTERS]) for j in counts
    ])  # (counts, filters, methods, signals, C, L)
    largest = shown[counts[-1]][1]
    return {
        "signals": signals[:k].numpy(),
        "labels": labels[:k].numpy(),
        "edges": edge_maps(signals[:k]).numpy(),
        "filter_counts": np.array(counts, dtype=np.int64),
        "filters": np.array(FILTERS),
        "methods": np.array(settings.methods),
        "maps": maps.astype(np.float32),
        "weights": np.stack([largest[f].filters.detach().numpy() for f in FILTERS]),
        "seed": np.array(seed),
    }


def run_convsum(config: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Run the agreement check and the filter sweep; write OUTPUTS into ``out_dir``."""
    settings = ConvSumSettings.from_config(config)
    agreement = agreement_table(settings)
    rel = agreement[agreement["metric"] == "rel_error"]
    worst = rel.groupby("dtype")["value"].max().to_dict()
    log.info("conv-sum closed forms vs registry, worst relative error per dtype: %s", worst)
    sweep = filter_sweep(settings)
    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in OUTPUTS.items()}
    write_csv(paths["agreement"], agreement)
    write_csv(paths["filters"], sweep.filters)
    write_csv(paths["training"], sweep.training)
    write_npz(paths["maps"], sweep.maps)
    return paths

