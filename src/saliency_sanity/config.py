"""Presets: the default config, a preset's overrides on top, and validation against the schema.

Resolution order (later wins): ``workflow/config/default.yaml`` < ``workflow/config/<preset>.yaml``
< the caller's overrides (``snakemake --config ...``). The result is validated against
``workflow/schemas/config.schema.yaml`` so a bad value fails before any work starts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO_ROOT / "workflow"


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


def available_presets(workflow_dir: Path = WORKFLOW_DIR) -> list[str]:
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
    workflow_dir: Path = WORKFLOW_DIR,
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


def validate_config(config: dict, workflow_dir: Path = WORKFLOW_DIR) -> None:
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


def model_name(dataset: str, arch: str, labels: str = "true") -> str:
    """Checkpoint name used across the workflow: ``<dataset>-<arch>[-random-labels]``."""
    return f"{dataset}-{arch}" + ("-random-labels" if labels == "random" else "")
