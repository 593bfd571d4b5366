"""The file contracts: where each result lives and what it holds (DESIGN.md, "File contracts").

Writers (the randomization runner, training, the theory checks) and readers (figures, benchmarks,
the workflow) import these names; nothing else declares them.

- A model checkpoint ``results/models/<name>.pt`` comes with ``<name>.json``, its record
  (:data:`RECORD_REQUIRED` at least).
- A randomization test writes the tidy CSV ``results/randomization/<model>-<mode>.csv``
  (:data:`SIMILARITY_COLUMNS`, one row per image, series, stage and metric) and the maps archive
  ``results/maps/<model>-<mode>.npz`` (:data:`MAPS_ARRAYS`, :data:`MAPS_NAMES`, optionally
  :data:`MAPS_OPTIONAL`). A series is a method with a baseline (``method``, ``baseline``;
  :data:`NO_BASELINE` for a method that takes none): every method with its configured baseline,
  then each path method with each baseline of ``randomization.baselines``. Each method's first
  series, in the CSV's rows and the archive's ``methods``, is its configured one.
- A theory check writes ``results/theory/<name>.csv`` and ``results/theory/<name>_maps.npz``.
- An evaluation (:mod:`saliency_sanity.evaluation`) writes the tidy CSV
  ``results/evaluation/<model>-<name>.csv``: :data:`EVALUATION_IDENTITY`, then the columns the
  evaluation declares in its registry entry; and the archive ``results/evaluation/<model>-<name>.npz``:
  the identity as 0-d strings and the arrays the evaluation kept (``EvaluationRun.keep``; maybe none).
- A figure's inputs are named by keys (:func:`figure_input_path`): ``<mode>_csv`` and
  ``<mode>_maps`` for a randomization test of the figure's model, ``theory_<name>_csv`` and
  ``theory_<name>_maps`` for a theory check, ``eval_<name>_csv`` and ``eval_<name>_maps`` for an
  evaluation of the model.
"""

from __future__ import annotations

from pathlib import Path

RESULTS_DIR = Path("results")
ORIGINAL_STAGE = "original"  # stage 0 of every randomization test: the model as given

RECORD_REQUIRED = ("dataset", "arch")
SIMILARITY_COLUMNS = ("dataset", "model", "mode", "stage", "stage_index", "method", "baseline", "metric", "image",
                      "value")
# The maps archive: arrays, 0-d string names, and arrays only some runs have.
MAPS_ARRAYS = ("images", "labels", "methods", "baselines", "stages", "original_abs", "original_signed", "maps_abs",
               "maps_signed", "targets", "predictions")
MAPS_NAMES = ("dataset", "model", "mode", "normalization")
MAPS_OPTIONAL = ("display", "completeness", "baseline_labels", "baseline_display")
NORMALIZATIONS = ("max", "percentile")  # how the archived maps were scaled (saliency_sanity.similarity)

TIMING_COLUMNS = ("wall_seconds",)  # how long a step took, not what it found: left out when runs are compared
RESULT_SUFFIXES = (".csv", ".npz")  # the result files two runs of one config must agree on
BENCHMARKS_DIR = RESULTS_DIR / "benchmarks"  # how long each job took (Snakemake's benchmark files, jobs.csv): not results

NO_BASELINE = "none"  # the baseline column of a method that takes none
EVALUATION_IDENTITY = ("dataset", "model", "evaluation")  # the first columns of every evaluation's CSV

THEORY_PREFIX = "theory_"
EVALUATION_PREFIX = "eval_"
INPUT_KINDS = ("csv", "maps")


def checkpoint_path(model: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    """``results/models/<model>.pt``."""
    return Path(results_dir) / "models" / f"{model}.pt"


def record_path(checkpoint: str | Path) -> Path:
    """The JSON record beside a checkpoint."""
    return Path(checkpoint).with_suffix(".json")


def model_name(dataset: str, arch: str, labels: str = "true") -> str:
    """Checkpoint name used across the workflow: ``<dataset>-<arch>[-random-labels]``."""
    return f"{dataset}-{arch}" + ("-random-labels" if labels == "random" else "")


def similarity_csv(model: str, mode: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "randomization" / f"{model}-{mode}.csv"


def maps_npz(model: str, mode: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "maps" / f"{model}-{mode}.npz"


def theory_csv(name: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "theory" / f"{name}.csv"


def theory_maps(name: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "theory" / f"{name}_maps.npz"


def evaluation_csv(model: str, name: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "evaluation" / f"{model}-{name}.csv"


def evaluation_npz(model: str, name: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    return Path(results_dir) / "evaluation" / f"{model}-{name}.npz"


def parse_figure_input(key: str) -> tuple[str, str, str]:
    """(source, name, kind) of a figure input key: ("randomization", mode, kind), ("theory", name, kind)
    or ("evaluation", name, kind)."""
    name, _, kind = key.rpartition("_")
    if kind not in INPUT_KINDS or not name:
        raise ValueError(f"figure input key {key!r} is none of <mode>_csv / <mode>_maps, theory_<name>_csv / _maps, "
                         "eval_<name>_csv / _maps")
    if name.startswith(THEORY_PREFIX):
        return "theory", name[len(THEORY_PREFIX):], kind
    if name.startswith(EVALUATION_PREFIX):
        return "evaluation", name[len(EVALUATION_PREFIX):], kind
    return "randomization", name, kind


def figure_input_path(key: str, model: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    """Where the workflow writes the figure input ``key`` for ``model``: the one reading of the key grammar."""
    source, name, kind = parse_figure_input(key)
    if source == "theory":
        return (theory_csv if kind == "csv" else theory_maps)(name, results_dir)
    if source == "evaluation":
        return (evaluation_csv if kind == "csv" else evaluation_npz)(model, name, results_dir)
    return (similarity_csv if kind == "csv" else maps_npz)(model, name, results_dir)
