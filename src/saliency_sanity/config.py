"""Presets: the default config, a preset's overrides on top, and validation against the schema.

Resolution order (later wins): ``workflow/config/default.yaml`` < ``workflow/config/<preset>.yaml``
< the caller's overrides (``snakemake --config ...``). The result is validated against
``workflow/schemas/config.schema.yaml`` so a bad value fails before any work starts. The workflow
folder is passed in (the Snakefile knows where it is); the package never looks for it in its own
source tree, so a non-editable install works.

Checks beyond the schema use one dialect: :func:`config_value` to read a key, and the checks
:func:`positive_int`, :func:`non_negative_int`, :func:`positive_float` and :func:`one_of`, each
raising :class:`ConfigError` that names the config key. Names the schema cannot know (datasets,
architectures, modes, methods) are checked against the registries by
:func:`saliency_sanity.names.check_names`.

:func:`randomize_settings` picks the sections one randomization job reads (for the ImageNet
models, the ``imagenet`` section's values in their place), and :func:`evaluation_settings` those
of an evaluation job, so a job reruns when, and only when, its own settings change.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import jsonschema
import yaml

MISSING = object()


class ConfigError(ValueError):
    """A preset that does not exist or a config value the schema rejects."""


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: ``override`` on top of ``base``, merging nested dicts key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def typed_overrides(value: Any) -> Any:
    """``snakemake --config`` values with their nested scalars typed as YAML reads them.

    Snakemake parses a nested ``--config key={a: 1, b: false}`` with YAML's BaseLoader, which keeps
    every nested scalar a string ('1', 'false'); read each such string as YAML, keeping it a string
    unless it is a number, a boolean or null.
    """
    if isinstance(value, dict):
        return {key: typed_overrides(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed_overrides(item) for item in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
    return value


def find_workflow_dir(start: str | Path | None = None) -> Path:
    """``<start>/workflow`` (default: the current folder), where the presets and the schema are."""
    folder = Path(start or Path.cwd()) / "workflow"
    if not (folder / "config" / "default.yaml").is_file():
        raise ConfigError(f"{folder} holds no config/default.yaml; run from the repository's root (the folder "
                          "with the Snakefile) or pass --workflow-dir")
    return folder


def available_presets(workflow_dir: Path) -> list[str]:
    return sorted(p.stem for p in (workflow_dir / "config").glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    return data


def resolve_config(
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    workflow_dir: Path,
) -> dict:
    """The validated config of ``preset`` (default: ``overrides['preset']`` or "default")."""
    overrides = dict(overrides or {})
    preset = preset or overrides.get("preset") or "default"
    config_dir = workflow_dir / "config"
    preset_file = config_dir / f"{preset}.yaml"
    if not preset_file.exists():
        raise ConfigError(
            f"unknown preset {preset!r} (config key 'preset'); available: "
            f"{', '.join(available_presets(workflow_dir))}"
        )
    config = _read_yaml(config_dir / "default.yaml")
    if preset != "default":
        config = deep_merge(config, _read_yaml(preset_file))
    config = deep_merge(config, overrides)
    config["preset"] = preset
    validate_config(config, workflow_dir)
    return config


def validate_config(config: dict, workflow_dir: Path) -> None:
    """Raise :class:`ConfigError` naming the offending key when the schema rejects a value."""
    schema = _read_yaml(workflow_dir / "schemas" / "config.schema.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  {'.'.join(str(p) for p in err.absolute_path) or '<top level>'}: {err.message}"
            for err in errors
        ]
        raise ConfigError("invalid config:\n" + "\n".join(lines))


def check_runnable(config: Mapping[str, Any]) -> None:
    """What a run needs that a preset may leave to the user (the paper preset: the ImageNet images)."""
    imagenet = config.get("imagenet") or {}
    if imagenet.get("enabled") and not imagenet.get("images"):
        raise ConfigError(
            "config key imagenet.images is not set: give a folder of ImageNet images with labels.json "
            "(--config 'imagenet={images: [/path/to/folder]}'), or [skimage, demo] for the bundled and the "
            "paper's demo photos, or disable the experiment with imagenet.enabled: false")


def config_value(config: Mapping[str, Any], key: str, default: Any = MISSING) -> Any:
    """The value of a dotted config key (``theory.linear.steps``); a missing key is an error naming it."""
    value: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(value, Mapping) or part not in value:
            if default is not MISSING:
                return default
            raise ConfigError(f"config key {'.'.join(parts[: depth + 1])} is missing; see workflow/config/default.yaml")
        value = value[part]
    return value


def positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config key {key} must be an integer >= 1, got {value!r}")
    return value


def non_negative_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"config key {key} must be an integer >= 0, got {value!r}")
    return value


def positive_float(value: Any, key: str) -> float:
    """A number > 0; also a numeric string, since YAML 1.1 reads ``1e-4`` (no dot) as text."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"config key {key} must be a number > 0, got {value!r}")
    return number


def one_of(value: Any, choices: Sequence[Any], key: str) -> Any:
    if value not in choices:
        raise ConfigError(f"config key {key} is {value!r}; choose one of {list(choices)}")
    return value


IMAGENET_RANDOMIZATION_KEYS = ("n_images", "explain", "batch_size", "grid_images", "batchnorm", "law", "granularity",
                               "order", "baselines", "baseline_modes")


def image_sources(imagenet: Mapping[str, Any]) -> list[str]:
    """The ``imagenet.images`` sources as a list (a single source may be given as a string)."""
    images = imagenet.get("images") or []
    return [images] if isinstance(images, str) else list(images)


def randomize_settings(config: Mapping[str, Any], dataset: str, arch: str | None = None) -> dict[str, Any]:
    """The config sections one randomization job reads, for a model ``arch`` of ``dataset``.

    The ImageNet models read the ``imagenet`` section: its randomization keys, its similarity
    section, its methods on top of the ``methods`` section, its image sources, and the model's
    own image size.
    """
    settings = {key: copy.deepcopy(config[key]) for key in ("seed", "device", "randomization", "methods", "similarity")}
    if dataset != "imagenet":
        return settings
    imagenet = config["imagenet"]
    methods = {name: dict(params or {}) for name, params in config["methods"].items()}
    for name, params in (imagenet.get("methods") or {}).items():
        methods[name] = {**methods.get(name, {}), **(params or {})}
    model = (imagenet.get("models") or {}).get(arch) or {}
    settings.update(
        randomization={key: imagenet[key] for key in IMAGENET_RANDOMIZATION_KEYS if key in imagenet},
        methods=methods,
        similarity=copy.deepcopy(imagenet["similarity"]),
        images={"sources": image_sources(imagenet), "labels": imagenet["labels"], "size": model.get("image_size")},
    )
    return settings


def training_settings(config: Mapping[str, Any], dataset: str, arch: str, labels: str = "true") -> dict[str, Any]:
    """What training ``arch`` on ``dataset`` with ``labels`` (true or random) reads of the training section: its
    ``models`` entry's ``training`` on top of the config's (e.g. fewer epochs for a dataset whose shortcut is
    learned at once), with only the ``<labels>_labels`` section and, in it, only this architecture's entry (the
    other mappings there are other architectures'). A job's settings are what decides that it reruns: another
    architecture's epochs, or the other label mode's, retrain nothing here."""
    overrides = next((m.get("training") or {} for m in config.get("models") or []
                      if (m["dataset"], m["arch"]) == (dataset, arch)), {})
    merged = deep_merge(config["training"], overrides)
    section_key = f"{labels}_labels"
    settings = {key: value for key, value in merged.items() if not key.endswith("_labels")}
    section = merged.get(section_key)
    if isinstance(section, Mapping):
        settings[section_key] = {key: value for key, value in section.items()
                                 if key == arch or not isinstance(value, Mapping)}
    return settings


def evaluation_settings(config: Mapping[str, Any], name: str, dataset: str, arch: str | None = None,
                        reads: Sequence[str] = ()) -> dict[str, Any]:
    """What evaluation job ``name`` reads for a model ``arch`` of ``dataset``: the randomization job's
    settings (seed, device, batch size, methods, images) and its section ``evaluations.<name>`` as
    ``evaluation``, with ``imagenet.evaluations.<name>`` on top for an ImageNet model. The similarity section
    only where ``reads`` names it (the evaluation's registry entry), so that no other evaluation reruns when it
    changes."""
    settings = randomize_settings(config, dataset, arch)
    if "similarity" not in reads:
        del settings["similarity"]
    section = copy.deepcopy((config.get("evaluations") or {}).get(name) or {})
    if dataset == "imagenet":
        section.update(copy.deepcopy(((config["imagenet"].get("evaluations") or {}).get(name)) or {}))
    section.pop("models", None)
    settings["evaluation"] = section
    return settings


def evaluation_models(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Evaluation name -> the models the config runs it on (``evaluations.<name>.models``)."""
    return {name: list((section or {}).get("models") or []) for name, section in (config.get("evaluations") or {}).items()}


def figure_notes(config: Mapping[str, Any], dataset: str, arch: str | None = None, weights: str | None = None) -> str:
    """Caption notes of a model's figures: how the preset departs from the paper, and the randomization protocol
    (re-initialization law, granularity, order; BatchNorm statistics for the ImageNet models); untrained weights
    are always said.

    ``weights``: the ImageNet model's weights as the run resolved them (``auto`` stands for a source);
    default: the config's value.
    """
    protocol = randomization_protocol(randomize_settings(config, dataset, arch)["randomization"], dataset)
    if dataset != "imagenet":
        return f"{config['figures']['notes']}; {protocol}"
    notes = f"{config['imagenet']['notes']}; {protocol}"
    weights = weights or ((config["imagenet"].get("models") or {}).get(arch) or {}).get("weights")
    if weights == "random":
        return notes + (f". UNTRAINED {arch} (imagenet.models.{arch}.weights: random): a check of the pipeline, "
                        "not the paper's result")
    return notes + f". {arch} with trained ImageNet weights (imagenet.models.{arch}.weights: {weights})"


def randomization_protocol(randomization: Mapping[str, Any], dataset: str) -> str:
    """The protocol of a randomization section in words, e.g. ``randomization protocol: law model, blocks,
    top-down``; the defaults are the paper's."""
    law = randomization.get("law") or "model"
    if isinstance(law, Mapping):
        params = ", ".join(f"{k} {v}" for k, v in law.items() if k != "name")
        law = f"{law.get('name')} ({params})" if params else law.get("name")
    words = [f"law {law}", randomization.get("granularity") or "blocks",
             (randomization.get("order") or "top_down").replace("_", "-")]
    if dataset == "imagenet":
        words.append(f"BatchNorm statistics {randomization.get('batchnorm') or 'keep'}")
    return "randomization protocol: " + ", ".join(words)
