"""The Snakemake DAG: the whole replication is planned, and bad config stops it before any job."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from saliency_sanity.config import evaluation_models, resolve_config
from saliency_sanity.figures import FIGURES, figures_for

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))


def dry_run(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    """Plan the DAG from the repository into an empty output directory (nothing is run)."""
    return subprocess.run(
        [SNAKEMAKE, "--dry-run", "--cores", "1", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--config", *config],
        capture_output=True, text=True, cwd=ROOT,
    )


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def test_dry_run_plans_every_stage_of_the_replication(tmp_path):
    result = dry_run(tmp_path, "preset=smoke")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    models, modes, imagenet_models = 3, 3, 2  # EfficientNet-Lite0 (real weights) and Inception v3 (untrained)
    assert counts["download_mnist"] == counts["download_fashion_mnist"] == counts["download_imagenet_demo"] == 1
    assert counts["train"] == 2 * models + 2  # true and random labels; the two shortcut models (no tests) true only
    # ImageNet: cascading and independent; no label randomization
    assert counts["randomize"] == models * modes + 2 * imagenet_models
    evaluations = evaluation_models(resolve_config("smoke", workflow_dir=ROOT / "workflow"))
    assert counts["evaluate"] == sum(len(models) for models in evaluations.values()) == 12
    run_modes = {"mnist-cnn": ["cascading", "independent", "labels"], "mnist-mlp": ["cascading", "independent", "labels"],
                 "fashion-mnist-cnn": ["cascading", "independent", "labels"],
                 "imagenet-efficientnet_lite0": ["cascading", "independent"], "imagenet-inception_v3": ["cascading", "independent"],
                 "decoy-mnist-cnn": [], "class-noise-mnist-cnn": []}
    per_model = sum(len(figures_for(modes, [e for e, names in evaluations.items() if model in names]))
                    for model, modes in run_modes.items())
    assert counts["imagenet_model"] == imagenet_models
    theory_figures = sum(spec.model is not None for spec in FIGURES.values())
    assert theory_figures == 3  # linear model, conv-sum x 2
    assert counts["figure"] == per_model + theory_figures
    assert counts["theory_linear"] == counts["theory_convsum"] == 1
    assert counts["figure_index"] == counts["record_config"] == counts["all"] == 1


def test_fewer_modes_plan_only_the_figures_they_feed(tmp_path):
    result = dry_run(tmp_path, "preset=smoke", "randomization={modes: [cascading]}")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["randomize"] == 3 + 2 * 2  # ImageNet (two models): their own modes
    assert "train" in counts and counts["train"] == 3 + 2  # no random-label models needed; the shortcut models
    cascading_only = [f for f in FIGURES.values() if all(k.startswith("cascading_") for k in f.inputs)]
    evaluation_figures = 1 + 1 + 2 + 2 + 3 + 2 + 2 * 2  # mnist-cnn: convergence, path outputs, ablation x 2, class
    # conversion x 2, the protocol matrix x 3; fashion: ablation x 2; the shortcut models: the accuracy and mass bars,
    # the maps
    # ImageNet: its own modes and evaluations; the theory figures (3) do not depend on the modes
    imagenet = len(figures_for(["cascading", "independent"])) * 2 + len(figures_for([], ["convergence", "path_outputs",
                                                                                       "ablation", "protocols"]))
    assert counts["figure"] == 3 * len(cascading_only) + evaluation_figures + imagenet + 3


def test_the_imagenet_experiment_can_be_disabled_or_reduced_to_one_mode(tmp_path):
    result = dry_run(tmp_path, "preset=smoke", "imagenet={enabled: false}")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert "imagenet_model" not in counts and counts["randomize"] == 9
    result = dry_run(tmp_path, "preset=smoke", "imagenet={modes: [cascading]}")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout)["randomize"] == 9 + 2  # EfficientNet-Lite0 and Inception v3


def test_the_paper_preset_asks_for_an_imagenet_folder(tmp_path):
    result = dry_run(tmp_path, "preset=paper")
    assert result.returncode != 0
    assert "imagenet.images" in result.stdout + result.stderr
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "labels.json").write_text("{}")
    result = dry_run(tmp_path, "preset=paper", f"imagenet={{images: [{folder}]}}")
    assert result.returncode == 0, result.stderr


def test_bad_config_value_stops_the_run_naming_the_key(tmp_path):
    result = dry_run(tmp_path, "preset=smoke", "device=gpu")
    assert result.returncode != 0
    assert "device" in result.stdout + result.stderr


def test_unknown_preset_is_an_error_listing_presets(tmp_path):
    result = dry_run(tmp_path, "preset=fast")
    assert result.returncode != 0
    assert "unknown preset 'fast'" in result.stdout + result.stderr


def test_unknown_names_stop_the_run_before_any_job(tmp_path):
    """Names the schema cannot know are checked against the registries when the DAG is planned
    (every kind of name: tests/test_packaging.py, on saliency_sanity.names.check_names)."""
    result = dry_run(tmp_path, "preset=smoke", "methods={smoothgrd: {}}")
    assert result.returncode != 0
    assert "smoothgrd" in result.stdout + result.stderr


def test_a_method_parameter_of_the_wrong_type_stops_the_run_naming_the_key(tmp_path):
    """Checked against the method's signature when the DAG is planned, not as a TypeError after training."""
    result = dry_run(tmp_path, "preset=smoke", "methods={smoothgrad: {n_samples: abc}}")
    assert result.returncode != 0
    assert "config key methods.smoothgrad.n_samples must be int, got 'abc'" in result.stdout + result.stderr


def test_a_non_editable_install_plans_the_workflow_outside_the_source_tree(tmp_path):
    """`pip install .` (not -e) is enough: the Snakefile finds workflow/ beside itself, not the package."""
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(ROOT)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    run_dir = tmp_path / "checkout"
    run_dir.mkdir()
    shutil.copy(ROOT / "Snakefile", run_dir)
    shutil.copytree(ROOT / "workflow", run_dir / "workflow")
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import saliency_sanity; print(saliency_sanity.__file__)"],
                           capture_output=True, text=True, env=env, cwd=run_dir)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the installed copy, not src/
    result = subprocess.run([SNAKEMAKE, "--dry-run", "--cores", "1", "--config", "preset=smoke"],
                            capture_output=True, text=True, env=env, cwd=run_dir)
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout)["all"] == 1


def test_snakemakes_own_commands_work_without_cores(tmp_path):
    """--unlock (which Snakemake's lock message asks for after a kill), --summary and --rulegraph need no --cores."""
    for command in ("--unlock", "--summary", "--rulegraph"):
        result = subprocess.run([SNAKEMAKE, command, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                                 "--config", "preset=smoke"], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, (command, result.stderr[-2000:])


def test_a_failed_jobs_own_error_line_reaches_the_console(tmp_path):
    """A job that fails at run time (here a download from a mirror that lacks the file) shows its log's error
    line on the console, not just Snakemake's 'message: None'."""
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    target = "data/fashion-mnist/raw/train-images-idx3-ubyte.gz"
    result = subprocess.run([SNAKEMAKE, "--cores", "1", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                             str(tmp_path), "--config", "preset=smoke", "--", target], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "SALIENCY_DATA_MIRROR": str(mirror),
                                                 "PATH": f"{Path(SNAKEMAKE).parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode != 0
    shown = [line for line in result.stderr.splitlines() if line.startswith("results/logs/download/")]
    assert shown and "data mirror has no" in shown[0] and "SALIENCY_DATA_MIRROR" in shown[0], result.stderr[-3000:]
    assert not (tmp_path / target).exists()
