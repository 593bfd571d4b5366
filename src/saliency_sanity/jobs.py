"""What every job that explains a checkpoint on its dataset loads: the model on the device, the test
examples (natural images prepared as the model's own input), and the data the harness's baselines
need. The randomization runner and the evaluations both start here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from saliency_sanity.baselines import BaselineSpec
from saliency_sanity.data import DataSource, Examples, dataset_spec, load_examples
from saliency_sanity.harness import Harness
from saliency_sanity.models import SanityModel, load_checkpoint, model_spec, read_record
from saliency_sanity.runtime import resolve_device

TRAINING_BASELINE_IMAGES = 1000  # training inputs a distribution baseline draws from (the first n of the split)


@dataclass(frozen=True)
class ExplainJob:
    """A loaded checkpoint, its test examples on the model's device, and where they came from."""

    name: str  # the checkpoint's stem, e.g. mnist-cnn
    model: SanityModel
    record: dict
    examples: Examples
    source: DataSource
    device: torch.device

    @property
    def dataset(self) -> str:
        return self.record["dataset"]


def load_job(
    model_path: str | os.PathLike, harness: Harness, *, seed: int, n_images: int | None,
    images: Mapping[str, Any] | None = None, data_dir: str | os.PathLike = "data", device: str = "auto",
    baselines: Sequence[BaselineSpec] = (),
) -> ExplainJob:
    """Load the checkpoint and the first ``n_images`` test examples of its dataset, and give the harness
    the examples' valid range and, where a baseline draws from them, the training inputs.

    ``images``: the natural-image source options (ImageNet models; config ``imagenet.images``).
    ``baselines``: those the job runs the path methods with besides their configured ones; the training
    inputs are loaded where one of these or a configured baseline draws from them.
    """
    model_path = Path(model_path)
    record = read_record(model_path)
    torch_device = resolve_device(device)
    model = load_checkpoint(model_path, torch_device)
    options = dict(images or {})
    recipe = model_spec(record["arch"]).image_preprocessing
    if recipe is not None:
        options["recipe"] = recipe  # natural images, prepared as this model's own input
    source = DataSource(Path(data_dir), seed, options, n_images)
    examples = load_examples(record["dataset"], "test", source).to(torch_device)
    train_data = harness.needs_train_data() or any(b.baseline.needs_train_data for b in baselines)
    inputs = training_inputs(record["dataset"], source).to(torch_device) if train_data else None
    harness.set_data(valid_range=examples.valid_range, train_data=inputs)
    return ExplainJob(model_path.stem, model, record, examples, source, torch_device)


def training_inputs(dataset: str, source: DataSource) -> torch.Tensor:
    """The inputs a distribution baseline draws from: the first TRAINING_BASELINE_IMAGES of the train split."""
    spec = dataset_spec(dataset)
    if "train" not in spec.splits:
        raise ValueError(f"a configured baseline draws from the training inputs, and dataset {dataset!r} has no "
                         f"train split; choose another baseline for its path methods (methods.<name>.baseline)")
    return load_examples(dataset, "train", replace(source, n=TRAINING_BASELINE_IMAGES)).images
