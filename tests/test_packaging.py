"""The conda route and the pip route install the same packages; presets validate."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from saliency_sanity.config import ConfigError, available_presets, resolve_config, typed_overrides

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "snakemake": "snakemake-minimal"}
SPEC = re.compile(r"^([A-Za-z0-9_.-]+)\s*(.*)$")

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflow"


def _split(spec: str) -> tuple[str, str]:
    name, version = SPEC.match(spec.strip()).groups()
    return name.lower(), version.replace(" ", "")


def test_environment_yml_lists_the_pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = dict(_split(s) for s in project["dependencies"] + extras["test"] + extras["cluster"])
    wanted = {CONDA_NAMES.get(name, name): version for name, version in wanted.items()}
    wanted["python"] = project["requires-python"]

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str) and d != "pip")
    pip = [d for entry in env["dependencies"] if isinstance(entry, dict) for d in entry.get("pip", [])]
    conda.update(_split(d) for d in pip if not d.startswith("-"))  # packages conda-forge lacks
    assert conda == wanted


def test_lock_file_pins_every_dependency_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if l and not l.startswith("#")]
    pins = dict(l.lower().split("==", 1) for l in lines)
    extras = project["optional-dependencies"]
    for spec in project["dependencies"] + extras["test"] + extras["cluster"]:
        name, _ = _split(spec)
        assert name in pins, f"{name} is not pinned in requirements.lock"
    assert all("==" in l for l in lines)


@pytest.mark.parametrize("preset", ["default", "smoke", "paper", "distill"])
def test_presets_resolve_and_validate(preset):
    config = resolve_config(preset, workflow_dir=WORKFLOW_DIR)
    assert config["preset"] == preset
    assert preset in available_presets(WORKFLOW_DIR)


def test_unknown_preset_names_the_available_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*smoke"):
        resolve_config("nope", workflow_dir=WORKFLOW_DIR)


def test_bad_config_value_names_the_key():
    with pytest.raises(ConfigError, match="randomization.n_images"):
        resolve_config("smoke", {"randomization": {"n_images": 0}}, workflow_dir=WORKFLOW_DIR)
    with pytest.raises(ConfigError, match="device"):
        resolve_config("smoke", {"device": "gpu"}, workflow_dir=WORKFLOW_DIR)


@pytest.mark.parametrize("overrides, key", [
    ({"methods": {"gradiant": {}}}, "methods.gradiant"),
    ({"methods": {"integrated_gradients": {"step": 5}}}, "methods.integrated_gradients"),
    ({"models": [{"dataset": "cifar", "arch": "cnn"}]}, r"models\[0\].dataset"),
    ({"models": [{"dataset": "mnist", "arch": "inception_v3"}]}, r"models\[0\].arch"),
    ({"randomization": {"modes": ["cascading", "sideways"]}}, "randomization.modes"),
    ({"imagenet": {"modes": ["labels"]}}, "imagenet.modes"),
    ({"imagenet": {"models": {"resnet": {"weights": "package"}}}}, "imagenet.models"),
    ({"imagenet": {"models": {"cnn": {"weights": "trained"}}}}, "imagenet.models.cnn"),
    ({"imagenet": {"models": {"efficientnet_lite0": {"weights": "pakage"}}}}, "imagenet.models.efficientnet_lite0.weights"),
])
def test_names_the_schema_cannot_know_are_checked_against_the_registries(overrides, key):
    from saliency_sanity.names import check_names

    config = resolve_config("default", workflow_dir=WORKFLOW_DIR)
    check_names(config)  # the preset itself is fine
    config = resolve_config("default", overrides, workflow_dir=WORKFLOW_DIR)
    with pytest.raises(ValueError, match=key):  # ConfigError and the registries' UnknownNameError are ValueErrors
        check_names(config)


def test_overrides_win_over_the_preset():
    config = resolve_config("smoke", {"seed": 7, "randomization": {"n_images": 2}}, workflow_dir=WORKFLOW_DIR)
    assert config["seed"] == 7 and config["randomization"]["n_images"] == 2
    assert config["randomization"]["explain"] == "predicted"  # untouched keys keep the preset's value


def test_paper_preset_trains_with_the_papers_settings():
    training = resolve_config("paper", workflow_dir=WORKFLOW_DIR)["training"]
    for labels, epochs in (("true_labels", 50), ("random_labels", 100)):
        section = training[labels]
        assert section.get("lr_schedule", training.get("lr_schedule", "constant")) == "constant"
        for arch in ("cnn", "mlp"):
            assert section[arch]["epochs"] == epochs and section[arch]["lr"] == 1e-4
            assert section[arch].get("batch_size", section.get("batch_size", training["batch_size"])) == 50
    assert training["random_labels"]["train_size"] is None


def test_nested_command_line_values_are_typed_as_yaml_reads_them():
    # what snakemake --config passes for imagenet={enabled: false, n_images: 2, notes: "a: b"}
    raw = {"imagenet": {"enabled": "false", "n_images": "2", "notes": "a: b",
                        "models": {"inception_v3": {"weights": "random"}}}, "seed": 3}
    typed = typed_overrides(raw)
    assert typed == {"imagenet": {"enabled": False, "n_images": 2, "notes": "a: b",
                                  "models": {"inception_v3": {"weights": "random"}}}, "seed": 3}
    assert resolve_config("smoke", typed, workflow_dir=WORKFLOW_DIR)["imagenet"]["enabled"] is False


def test_the_imagenet_sections_of_the_presets():
    default, smoke, paper = (resolve_config(p, workflow_dir=WORKFLOW_DIR)["imagenet"] for p in ("default", "smoke", "paper"))
    assert default["models"]["efficientnet_lite0"]["weights"] == "package"  # trained, offline
    assert default["models"]["inception_v3"]["weights"] == "auto" and default["images"] == ["demo"]
    # IG refined per image while its completeness error is over 5 %, on ImageNet models only
    assert default["methods"]["integrated_gradients"]["tolerance"] == 0.05
    assert paper["methods"]["integrated_gradients"]["tolerance"] == 0.05
    assert default["baselines"] == [] and smoke["baselines"] == ["uniform"]  # the time budget; CI runs the code
    assert smoke["methods"]["integrated_gradients"]["tolerance"] is None  # CI: fixed steps
    assert default["batchnorm"] == "keep" and default["similarity"]["normalization"] == "percentile"
    assert smoke["models"]["efficientnet_lite0"]["weights"] == "package"  # real weights in CI too
    assert smoke["models"]["inception_v3"]["weights"] == "random"  # offline
    assert paper["n_images"] == 200 and paper["images"] is None  # the user's ImageNet folder
    assert paper["methods"]["integrated_gradients"]["steps"] == 50
    assert paper["methods"]["smoothgrad"]["n_samples"] == 50


def test_captions_name_the_imagenet_weights_as_resolved_and_the_randomization_protocol():
    from saliency_sanity.config import figure_notes

    config = resolve_config("default", workflow_dir=WORKFLOW_DIR)
    assert "inception_v3.weights: auto" in figure_notes(config, "imagenet", "inception_v3")
    assert "inception_v3.weights: torchvision" in figure_notes(config, "imagenet", "inception_v3", "torchvision")
    untrained = resolve_config("smoke", workflow_dir=WORKFLOW_DIR)
    assert "UNTRAINED inception_v3" in figure_notes(untrained, "imagenet", "inception_v3", "random")
    assert "randomization protocol: law model, blocks, top-down, BatchNorm statistics keep" in \
        figure_notes(config, "imagenet", "inception_v3")
    config["randomization"].update(law={"name": "gaussian_noise", "scale": 0.5}, order="bottom_up")
    assert figure_notes(config, "mnist", "cnn").endswith(
        "randomization protocol: law gaussian_noise (scale 0.5), blocks, bottom-up")


def test_the_citation_file_matches_the_package_and_cites_the_replicated_papers():
    """CITATION.cff (CFF 1.2.0; checked once against the schema cffconvert ships): the package's version and
    license, and each replicated paper as a complete reference."""
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert str(citation["version"]) == project["version"] and citation["license"] == project["license"]["text"]
    titles = {ref["title"] for ref in citation["references"]}
    assert {"Sanity Checks for Saliency Maps", "Visualizing the Impact of Feature Attribution Baselines",
            "Axiomatic Attribution for Deep Networks",
            "Learning Important Features Through Propagating Activation Differences"} <= titles
    for ref in citation["references"]:
        assert ref["type"] and ref["year"] and all(a["family-names"] and a["given-names"] for a in ref["authors"])
