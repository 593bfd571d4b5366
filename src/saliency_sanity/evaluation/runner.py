"""Run one registered evaluation on one checkpoint and write its tidy CSV and its archive.

The job reads the config as :func:`saliency_sanity.config.evaluation_settings` gives it: the seed,
the device, the batch size, the methods (for an ImageNet model, the ``imagenet`` section's on top),
the image source, and the evaluation's own section (``evaluation``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from saliency_sanity.baselines import BaselineSpec
from saliency_sanity.config import config_value, positive_int
from saliency_sanity.evaluation.registry import EVALUATIONS, EvaluationRun
from saliency_sanity.harness import Harness
from saliency_sanity.jobs import load_job
from saliency_sanity.runtime import atomic_write, write_npz

log = logging.getLogger(__name__)


def run_evaluation(
    name: str, model_path: str | os.PathLike, config: Mapping[str, Any], out_csv: str | os.PathLike,
    out_maps: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None, device: str = "auto",
) -> pd.DataFrame:
    """Evaluation ``name`` of the checkpoint at ``model_path``: its table, written to ``out_csv``, and the arrays
    it kept, written to ``out_maps`` (default: beside the CSV, ``.npz``)."""
    evaluation = EVALUATIONS.get_entry(name, "evaluations")
    section = dict(config.get("evaluation") or {})
    params = evaluation.check_params(section)
    n_images = section.get("n_images")
    if n_images is not None:
        positive_int(n_images, f"evaluations.{name}.n_images")
    seed = int(config.get("seed", 0))
    batch_size = config_value(config, "randomization.batch_size", None)
    harness = Harness(config.get("methods"), seed=seed, batch_size=batch_size)
    baselines = [BaselineSpec.parse(b, f"evaluations.{name}.baselines") for b in params.get("baselines") or []]
    job = load_job(model_path, harness, seed=seed, n_images=n_images, images=config.get("images"),
                   data_dir=data_dir or config.get("data_dir", "data"), device=device, baselines=baselines)
    log.info("%s of %s: %d images, device %s", name, job.name, len(job.examples.images), job.device)
    run = EvaluationRun(job, harness, batch_size, config)
    table = evaluation(run, **params)
    identity = {"dataset": job.dataset, "model": job.name, "evaluation": name}  # contracts.EVALUATION_IDENTITY
    table = pd.concat([pd.DataFrame({k: [v] * len(table) for k, v in identity.items()}, index=table.index), table],
                      axis=1)
    atomic_write(Path(out_csv), lambda tmp: table.to_csv(tmp, index=False))
    out_maps = Path(out_maps) if out_maps is not None else Path(out_csv).with_suffix(".npz")
    write_npz(out_maps, {**{k: np.array(v, dtype=str) for k, v in identity.items()}, **run.kept})
    log.info("wrote %s (%d rows) and %s (%s)", out_csv, len(table), out_maps, sorted(run.kept) or "no arrays")
    return table
