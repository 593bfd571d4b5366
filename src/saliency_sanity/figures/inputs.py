"""Reading the runners' outputs (similarity CSV, maps npz, evaluation CSV) with errors that say what is wrong.

Also :func:`summarize`, the one statistic every figure shows: the mean over images with a
percentile-bootstrap 95 % confidence interval (:func:`saliency_sanity.statistics.mean_ci`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saliency_sanity.contracts import EVALUATION_IDENTITY
from saliency_sanity.contracts import MAPS_ARRAYS as NPZ_ARRAYS
from saliency_sanity.contracts import MAPS_NAMES as NPZ_NAMES
from saliency_sanity.contracts import MAPS_OPTIONAL as NPZ_OPTIONAL
from saliency_sanity.contracts import NORMALIZATIONS
from saliency_sanity.contracts import SIMILARITY_COLUMNS as CSV_COLUMNS
from saliency_sanity.statistics import mean_ci



class FigureInputError(ValueError):
    """An input file exists but does not follow its file contract."""


@dataclass(frozen=True)
class MapSet:
    """The maps archive of one randomization run (written by ``saliency_sanity.randomization.runner.write_maps``).

    Maps are stored as compared: normalized (``normalization``: "max" or "percentile"), summed
    over channels, float16; absolute in [0, 1], signed in [-1, 1]. ``original_abs`` /
    ``original_signed`` are (methods, images, H, W) at stage 0; ``maps_abs`` / ``maps_signed``
    are (methods, stages, grid_images, H, W), every stage of the first ``grid_images`` images. Their first
    axis is the series (``methods[i]`` with ``baselines[i]``); each method's first series is its configured
    baseline, the one a method name alone picks.
    """

    path: Path
    images: np.ndarray
    labels: np.ndarray
    methods: list[str]
    baselines: list[str]
    stages: list[str]
    original_abs: np.ndarray
    original_signed: np.ndarray
    maps_abs: np.ndarray
    maps_signed: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    dataset: str
    model: str
    mode: str
    normalization: str
    display: np.ndarray | None = None  # (images, C, H, W) in [0, 1]: the input as figures show it
    completeness: np.ndarray | None = None  # (methods, stages, images): completeness error, NaN where undefined
    baseline_labels: list[str] | None = None  # the baselines shown in baseline_display
    baseline_display: np.ndarray | None = None  # (baselines, grid_images, C, H, W) in [0, 1]: each one's first draw

    @property
    def n_images(self) -> int:
        return self.images.shape[0]

    @property
    def grid_images(self) -> int:
        """How many images (the first ones) have their maps at every stage."""
        return self.maps_abs.shape[2]

    @property
    def configured_methods(self) -> list[str]:
        """Each method once (the series of its configured baseline)."""
        return list(dict.fromkeys(self.methods))

    def baselines_of(self, method: str) -> list[str]:
        """The baselines ``method`` ran with, its configured one first."""
        return [b for m, b in zip(self.methods, self.baselines) if m == method]

    def series(self, method: str, baseline: str | None = None) -> int:
        """The index of ``method``'s series with ``baseline`` (None: its configured one)."""
        for index, (m, b) in enumerate(zip(self.methods, self.baselines)):
            if m == method and baseline in (None, b):
                return index
        raise FigureInputError(f"{self.path}: no maps of {method!r} with baseline {baseline!r}; it has "
                               f"{sorted(set(zip(self.methods, self.baselines)))}")

    def original(self, method: str, image: int, signed: bool = False, baseline: str | None = None) -> np.ndarray:
        """The (H, W) stage-0 map of ``image`` by ``method`` (with ``baseline``; None: the configured one)."""
        return (self.original_signed if signed else self.original_abs)[self.series(method, baseline), image]

    def map(self, method: str, stage: int, image: int, signed: bool = False, baseline: str | None = None) -> np.ndarray:
        """The (H, W) map of ``image`` by ``method`` at ``stage``; only the first grid_images images."""
        self.require_grid_image(image)
        return (self.maps_signed if signed else self.maps_abs)[self.series(method, baseline), stage, image]

    def require_grid_image(self, image: int) -> None:
        if not 0 <= image < self.grid_images:
            raise FigureInputError(
                f"{self.path}: the maps of every stage are kept for the first {self.grid_images} image(s) only, "
                f"not image {image}; raise the config key randomization.grid_images (imagenet.grid_images for "
                f"the ImageNet model) and rerun the randomization step"
            )

    def input_image(self, image: int) -> np.ndarray:
        """The (C, H, W) input as figures show it: ``display`` where the archive has it, else ``images``."""
        return (self.display if self.display is not None else self.images)[image]


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
                hint = (" (an archive of raw maps from an older runner: rerun the randomization step)"
                        if "maps" in npz.files else "")
                raise FigureInputError(f"{path}: missing array(s) {missing}; it has {sorted(npz.files)}{hint}")
            arrays = {k: npz[k] for k in NPZ_ARRAYS + NPZ_NAMES + NPZ_OPTIONAL if k in npz.files}
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
        baselines=[str(b) for b in arrays["baselines"]],
        stages=[str(s) for s in arrays["stages"]],
        original_abs=arrays["original_abs"],
        original_signed=arrays["original_signed"],
        maps_abs=arrays["maps_abs"],
        maps_signed=arrays["maps_signed"],
        targets=arrays["targets"],
        predictions=arrays["predictions"],
        display=arrays.get("display"),
        completeness=arrays.get("completeness"),
        baseline_labels=[str(b) for b in arrays["baseline_labels"]] if "baseline_labels" in arrays else None,
        baseline_display=arrays.get("baseline_display"),
        **{k: str(arrays[k][()]) for k in NPZ_NAMES},
    )
    _check_shapes(maps)
    return maps


def _check_array(m: MapSet, name: str, expected: tuple, layout: str) -> None:
    array = getattr(m, name)
    if array.shape != expected:
        raise FigureInputError(f"{m.path}: {name} has shape {array.shape}, expected {layout} = {expected}")
    if not np.issubdtype(array.dtype, np.floating):
        raise FigureInputError(f"{m.path}: {name} has dtype {array.dtype}, expected floating point (float16)")


def _check_shapes(m: MapSet) -> None:
    if m.images.ndim != 4:
        raise FigureInputError(f"{m.path}: images has shape {m.images.shape}, expected (images, C, H, W)")
    n = m.images.shape[0]
    if not (m.methods and m.stages and n):
        raise FigureInputError(f"{m.path}: needs at least one method, stage and image; it has "
                               f"{len(m.methods)}, {len(m.stages)} and {n}")
    methods, stages, size = len(m.methods), len(m.stages), m.images.shape[2:]
    for name in ("original_abs", "original_signed"):
        _check_array(m, name, (methods, n) + size, "(methods, images, H, W)")
    if m.maps_abs.ndim != 5 or not 1 <= m.maps_abs.shape[2] <= n:
        raise FigureInputError(f"{m.path}: maps_abs has shape {m.maps_abs.shape}, expected (methods, stages, "
                               f"grid_images, H, W) = {(methods, stages, 'G') + size} with 1 <= G <= {n}")
    for name in ("maps_abs", "maps_signed"):
        _check_array(m, name, (methods, stages, m.maps_abs.shape[2]) + size, "(methods, stages, grid_images, H, W)")
    if m.display is not None:
        channels = m.display.shape[1] if m.display.ndim == 4 else "C"
        _check_array(m, "display", (n, channels) + size, "(images, C, H, W)")
    if m.normalization not in NORMALIZATIONS:
        raise FigureInputError(f"{m.path}: normalization is {m.normalization!r}, expected one of {NORMALIZATIONS}")
    for key in ("targets", "predictions"):
        if getattr(m, key).shape != (len(m.stages), n):
            raise FigureInputError(f"{m.path}: {key} has shape {getattr(m, key).shape}, expected {(len(m.stages), n)}")
    if m.completeness is not None and m.completeness.shape != (methods, stages, n):
        raise FigureInputError(f"{m.path}: completeness has shape {m.completeness.shape}, expected (methods, stages, "
                               f"images) = {(methods, stages, n)}")
    if len(m.baselines) != methods or len(set(zip(m.methods, m.baselines))) != methods:
        raise FigureInputError(f"{m.path}: baselines has {len(m.baselines)} entries for {methods} methods, or a "
                               "(method, baseline) series twice; expected one baseline per entry of methods")
    if (m.baseline_display is None) != (m.baseline_labels is None):
        raise FigureInputError(f"{m.path}: baseline_display and baseline_labels come together")
    if m.baseline_display is not None:
        expected = (len(m.baseline_labels), m.grid_images, m.images.shape[1]) + size
        _check_array(m, "baseline_display", expected, "(baselines, grid_images, C, H, W)")
    if m.labels.shape != (n,):
        raise FigureInputError(f"{m.path}: labels has shape {m.labels.shape}, expected {(n,)}")


def configured(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each method's configured baseline: its first series in the table (the file contract)."""
    first = table.groupby("method", sort=False)["baseline"].first()
    return table[table["baseline"] == table["method"].map(first)]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI over images for each (method, baseline, metric, stage)."""
    rows = []
    for (method, baseline, metric, stage_index, stage), group in table.groupby(
        ["method", "baseline", "metric", "stage_index", "stage"], sort=True
    ):
        mean, low, high = mean_ci(group["value"].to_numpy())
        rows.append(
            dict(method=method, baseline=baseline, metric=metric, stage_index=stage_index, stage=stage,
                 mean=mean, low=low, high=high, n=int(group["value"].notna().sum()))
        )
    return pd.DataFrame(rows)


def stage_names(table: pd.DataFrame) -> list[str]:
    """Stage names ordered by stage index, checked to be one name per index."""
    pairs = table[["stage_index", "stage"]].drop_duplicates().sort_values("stage_index")
    if pairs["stage_index"].duplicated().any():
        raise FigureInputError(f"stage indices with more than one stage name: {pairs.to_dict('records')}")
    return pairs["stage"].tolist()


def load_evaluation(path: Path, name: str) -> pd.DataFrame:
    """An evaluation's tidy CSV, checked against its contract: the identity columns, then the columns its
    registry entry declares, and one evaluation named in it."""
    from saliency_sanity.evaluation import EVALUATIONS

    table = pd.read_csv(path)
    expected = list(EVALUATION_IDENTITY) + list(EVALUATIONS.get_entry(name).columns)
    if list(table.columns) != expected:
        raise FigureInputError(f"{path}: columns {list(table.columns)}, expected {expected} (evaluation {name!r})")
    if table.empty or set(table["evaluation"]) != {name}:
        raise FigureInputError(f"{path}: expected the rows of evaluation {name!r}, found {sorted(set(table['evaluation']))}")
    return table


def load_evaluation_maps(path: Path, name: str) -> dict[str, np.ndarray]:
    """An evaluation's archive: its identity (0-d strings) and the arrays the evaluation kept."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as err:
        raise FigureInputError(f"{path}: cannot be read without pickle ({err})") from err
    missing = [key for key in EVALUATION_IDENTITY if key not in arrays]
    if missing or str(arrays.get("evaluation", "")) != name:
        raise FigureInputError(f"{path}: expected the archive of evaluation {name!r} (identity {list(EVALUATION_IDENTITY)}); "
                               f"it has {sorted(arrays)}")
    return arrays


def require_arrays(arrays: dict[str, np.ndarray], keys: tuple[str, ...], what: str) -> None:
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise FigureInputError(f"{what}: missing array(s) {missing}; rerun the step that writes it")
