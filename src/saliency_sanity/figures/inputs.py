"""Reading the randomization runner's outputs (tidy CSV, maps npz) with errors that say what is wrong.

Also the one statistic every figure shows: the mean over images with a percentile-bootstrap
95 % confidence interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CSV_COLUMNS = ("dataset", "model", "mode", "stage", "stage_index", "method", "metric", "image", "value")
NPZ_ARRAYS = ("images", "labels", "methods", "stages", "maps", "targets", "predictions")
NPZ_NAMES = ("dataset", "model", "mode")
N_BOOT = 1000
CI_LEVEL = 0.95


class FigureInputError(ValueError):
    """An input file exists but does not follow its file contract."""


@dataclass(frozen=True)
class MapSet:
    """The raw maps of one randomization run: ``maps[method, stage, image]`` is (C, H, W)."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    methods: list[str]
    stages: list[str]
    maps: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    dataset: str
    model: str
    mode: str

    def map(self, method: str, stage: int, image: int) -> np.ndarray:
        return self.maps[self.methods.index(method), stage, image]


def load_similarity(path: Path) -> pd.DataFrame:
    """The tidy similarity CSV, checked for its columns and for at least one row."""
    table = pd.read_csv(path)
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise FigureInputError(f"{path}: missing column(s) {missing}; expected {list(CSV_COLUMNS)}")
    if table.empty:
        raise FigureInputError(f"{path}: no rows; rerun the randomization step that writes it")
    return table


def load_maps(path: Path) -> MapSet:
    """The maps npz, with its array shapes checked against each other."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_ARRAYS + NPZ_NAMES if k not in npz.files]
            if missing:
                raise FigureInputError(f"{path}: missing array(s) {missing}; it has {sorted(npz.files)}")
            arrays = {k: npz[k] for k in NPZ_ARRAYS + NPZ_NAMES}
    except ValueError as err:
        if isinstance(err, FigureInputError):
            raise
        raise FigureInputError(
            f"{path}: cannot be read without pickle ({err}); save names as str arrays, not objects"
        ) from err
    maps = MapSet(
        path=Path(path),
        images=arrays["images"],
        labels=arrays["labels"],
        methods=[str(m) for m in arrays["methods"]],
        stages=[str(s) for s in arrays["stages"]],
        maps=arrays["maps"],
        targets=arrays["targets"],
        predictions=arrays["predictions"],
        **{k: str(arrays[k][()]) for k in NPZ_NAMES},
    )
    _check_shapes(maps)
    return maps


def _check_shapes(m: MapSet) -> None:
    n = m.images.shape[0]
    if not (m.methods and m.stages and n):
        raise FigureInputError(f"{m.path}: needs at least one method, stage and image; it has "
                               f"{len(m.methods)}, {len(m.stages)} and {n}")
    expected = (len(m.methods), len(m.stages), n) + m.images.shape[1:]
    if m.images.ndim != 4 or m.maps.shape != expected:
        raise FigureInputError(
            f"{m.path}: maps have shape {m.maps.shape}, expected (methods, stages, images, C, H, W) = "
            f"{expected} from images {m.images.shape}"
        )
    for key in ("targets", "predictions"):
        if getattr(m, key).shape != (len(m.stages), n):
            raise FigureInputError(f"{m.path}: {key} has shape {getattr(m, key).shape}, expected {(len(m.stages), n)}")
    if m.labels.shape != (n,):
        raise FigureInputError(f"{m.path}: labels has shape {m.labels.shape}, expected {(n,)}")


def mean_ci(values: np.ndarray, *, n_boot: int = N_BOOT, level: float = CI_LEVEL, seed: int = 0):
    """(mean, low, high): percentile bootstrap CI of the mean; NaNs (undefined scores) dropped.

    Deterministic for a seed, so figures do not change between reruns on the same data.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    means = values[np.random.default_rng(seed).integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return values.mean(), low, high


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI over images for each (method, metric, stage)."""
    rows = []
    for (method, metric, stage_index, stage), group in table.groupby(
        ["method", "metric", "stage_index", "stage"], sort=True
    ):
        mean, low, high = mean_ci(group["value"].to_numpy())
        rows.append(
            dict(method=method, metric=metric, stage_index=stage_index, stage=stage,
                 mean=mean, low=low, high=high, n=int(group["value"].notna().sum()))
        )
    return pd.DataFrame(rows)


def stage_names(table: pd.DataFrame) -> list[str]:
    """Stage names ordered by stage index, checked to be one name per index."""
    pairs = table[["stage_index", "stage"]].drop_duplicates().sort_values("stage_index")
    if pairs["stage_index"].duplicated().any():
        raise FigureInputError(f"stage indices with more than one stage name: {pairs.to_dict('records')}")
    return pairs["stage"].tolist()
