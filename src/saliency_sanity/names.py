"""Config checks that need the registries: the names a schema cannot know.

:func:`saliency_sanity.config.resolve_config` checks a config against the schema; this module
checks the names in it against what is registered (datasets, architectures, randomization modes,
methods and their parameters), so a misspelled name stops the workflow when the DAG is planned,
not after training. It sits above the registries, so the config module itself imports none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from saliency_sanity.baselines import BaselineSpec
from saliency_sanity.config import ConfigError, config_value, evaluation_models, randomize_settings
from saliency_sanity.data import DATASETS
from saliency_sanity.evaluation import EVALUATIONS
from saliency_sanity.harness import Harness
from saliency_sanity.models import MODELS
from saliency_sanity.randomization.modes import MODES


def check_names(config: Mapping[str, Any]) -> None:
    """Names the schema cannot know, checked against the registries before any job runs: the models'
    datasets and architectures, the randomization modes, every method's name and parameters, and the
    baselines listed for the randomization tests and the evaluations (a misspelled method fails here, not
    after training)."""
    for index, entry in enumerate(config.get("models") or []):
        DATASETS.get_entry(entry["dataset"], f"models[{index}].dataset")
        if "trained" not in MODELS.get_entry(entry["arch"], f"models[{index}].arch").weights:
            raise ConfigError(f"config key models[{index}].arch is {entry['arch']!r}, which is not trained by the "
                              "workflow (its weights come from a published checkpoint)")
        for mode in entry.get("modes") or []:
            MODES.get_entry(mode, f"models[{index}].modes")
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
        section = key.split(".")[0]
        for mode in config_value(config, f"{section}.baseline_modes", None) or []:
            MODES.get_entry(mode, f"{section}.baseline_modes")
        for baseline in config_value(config, f"{section}.baselines", None) or []:
            if BaselineSpec.parse(baseline, f"{section}.baselines").baseline.needs_train_data and dataset == "imagenet":
                raise ConfigError(f"config key imagenet.baselines lists {baseline!r}, drawn from the training images, "
                                  "and the ImageNet models have none; leave it out")
        harness = Harness(randomize_settings(config, dataset)["methods"])
        if dataset == "imagenet" and harness.needs_train_data():
            raise ConfigError("config keys methods / imagenet.methods give a path method a baseline drawn from the "
                              "training images (training), and the ImageNet models have none; give it another "
                              "baseline in imagenet.methods")
    sections = [("evaluations", config.get("evaluations") or {}), ("imagenet.evaluations", imagenet.get("evaluations") or {})]
    for key, evaluations in sections:
        for name, section in evaluations.items():
            if key == "imagenet.evaluations" and "models" in (section or {}):
                raise ConfigError(f"config key imagenet.evaluations.{name}.models: the models an evaluation runs on "
                                  f"are listed in evaluations.{name}.models only")
            params = EVALUATIONS.get_entry(name, key).check_params(section or {})
            for baseline in params.get("baselines") or []:
                BaselineSpec.parse(baseline, f"{key}.{name}.baselines")
    if imagenet.get("enabled"):
        _check_imagenet_evaluation_baselines(config)


def _check_imagenet_evaluation_baselines(config: Mapping[str, Any]) -> None:
    """An evaluation of an ImageNet model may not list a baseline drawn from the training images."""
    for name, models in evaluation_models(config).items():
        if not any(model.startswith("imagenet-") for model in models):
            continue
        section = {**((config.get("evaluations") or {}).get(name) or {}),
                   **((config["imagenet"].get("evaluations") or {}).get(name) or {})}
        drawn = [b for b in section.get("baselines") or [] if BaselineSpec.parse(b).baseline.needs_train_data]
        if drawn:
            raise ConfigError(f"config key evaluations.{name}.baselines lists {drawn}, drawn from the training images, "
                              f"and the ImageNet models in evaluations.{name}.models have none; set "
                              f"imagenet.evaluations.{name}.baselines without it")


def evaluation_jobs(config: Mapping[str, Any], datasets: Mapping[str, str], left_out: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(evaluation, model) pairs the run makes: each ``evaluations.<name>.models`` entry that is a model of
    the run (``datasets``: model name -> its dataset). A model the run left out (an ImageNet model without
    its weights) is skipped; any other name is an error naming the config key."""
    jobs = []
    for name, models in evaluation_models(config).items():
        evaluation = EVALUATIONS.get_entry(name, "evaluations")
        for model in models:
            if model in left_out:
                continue
            if model not in datasets:
                raise ConfigError(f"config key evaluations.{name}.models lists {model!r}, which this run neither trains "
                                  f"nor loads; the run's models: {sorted(datasets)}")
            if not evaluation.applies_to(datasets[model]):
                raise ConfigError(f"config key evaluations.{name}.models lists {model!r}, a {datasets[model]} model; "
                                  f"{name} applies to {list(evaluation.datasets)}")
            jobs.append((name, model))
    return jobs


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
