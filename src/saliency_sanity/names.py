"""Config checks that need the registries: the names a schema cannot know.

:func:`saliency_sanity.config.resolve_config` checks a config against the schema; this module
checks the names in it against what is registered (datasets, architectures, randomization modes,
methods and their parameters), so a misspelled name stops the workflow when the DAG is planned,
not after training. It sits above the registries, so the config module itself imports none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from saliency_sanity.config import ConfigError, config_value, randomize_settings
from saliency_sanity.data import DATASETS
from saliency_sanity.harness import Harness
from saliency_sanity.models import MODELS
from saliency_sanity.randomization.modes import MODES


def check_names(config: Mapping[str, Any]) -> None:
    """Names the schema cannot know, checked against the registries before any job runs: the models'
    datasets and architectures, the randomization modes, and every method's name and parameters
    (a misspelled method fails here, not after training)."""
    for index, entry in enumerate(config.get("models") or []):
        DATASETS.get_entry(entry["dataset"], f"models[{index}].dataset")
        if "trained" not in MODELS.get_entry(entry["arch"], f"models[{index}].arch").weights:
            raise ConfigError(f"config key models[{index}].arch is {entry['arch']!r}, which is not trained by the "
                              "workflow (its weights come from a published checkpoint)")
    sections = [("randomization.modes", "mnist")]
    imagenet = config.get("imagenet") or {}
    if imagenet.get("enabled"):
        sections.append(("imagenet.modes", "imagenet"))
        for arch, settings in (imagenet.get("models") or {}).items():
            check_imagenet_model(arch, settings)
    for key, dataset in sections:
        for mode in config_value(config, key):
            if MODES.get_entry(mode, key).needs and dataset == "imagenet":
                raise ConfigError(f"config key {key} lists {mode!r}, which needs {list(MODES[mode].needs)}; "
                                  "the ImageNet models have none")
        Harness(randomize_settings(config, dataset)["methods"])


def check_imagenet_model(arch: str, settings: Mapping[str, Any] | None) -> None:
    """An ``imagenet.models`` entry: a registered ImageNet architecture with published weights, and a
    weights value it knows (one of its named sources, or a file's path)."""
    key = f"imagenet.models.{arch}"
    spec = MODELS.get_entry(arch, "imagenet.models")
    if spec.published is None or "imagenet" not in spec.datasets:
        raise ConfigError(f"config key {key}: {arch!r} is not an ImageNet model with published weights; choose from "
                          f"{[n for n, s in MODELS.items() if s.published is not None and 'imagenet' in s.datasets]}")
    if settings is None:
        return
    weights = settings.get("weights")
    named = [source for source in spec.weights if source != "file"]
    if weights not in named and not ("file" in spec.weights and Path(str(weights)).expanduser().is_file()):
        raise ConfigError(f"config key {key}.weights is {weights!r}: neither one of {named} nor an existing "
                          "weights file")
