"""Whole Snakemake runs of one small target (the smoke MNIST MLP, trained and put through the cascading test):
a run killed or interrupted mid-job resumes without redoing finished jobs and ends byte-identical to one that
was not; two runs at once in one folder; a changed setting replans only the jobs that read it; and the same
seed gives the same results and figures with one core or two."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from saliency_sanity.provenance import compare_results

from test_workflow import ROOT, SNAKEMAKE, job_counts

MIRROR = Path(os.environ.get("SALIENCY_DATA_MIRROR", ROOT.parent / "shared" / "data"))
MODEL = "results/models/mnist-mlp.pt"
RESULTS = ["results/randomization/mnist-mlp-cascading.csv", "results/maps/mnist-mlp-cascading.npz"]
FIGURES = ["figures/similarity_cascading-mnist-mlp.pdf", "figures/similarity_cascading-mnist-mlp.png"]
TARGETS = [*RESULTS, *FIGURES]
LOGS = {"train": "results/logs/train/mnist-mlp.log", "randomize": "results/logs/randomize/mnist-mlp-cascading.log"}
PARTIAL = ("*.tmp", "*.pt", "*.npz", "*.csv")

pytestmark = pytest.mark.skipif(not (MIRROR / "mnist").is_dir(), reason=f"no data mirror at {MIRROR}")


def snakemake(workdir: Path, *args: str, cores: int = 2, wait: bool = True):
    """Snakemake on the repository's workflow in ``workdir`` (its own process group, so that a signal reaches
    the jobs as Ctrl-C or a killed session would), with the smoke preset and the data mirror."""
    command = [SNAKEMAKE, "--cores", str(cores), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--config", "preset=smoke", *args]
    env = {**os.environ, "SALIENCY_DATA_MIRROR": str(MIRROR),
           "PATH": f"{Path(SNAKEMAKE).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env=env, start_new_session=True)
    if not wait:
        return process
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output[-3000:]
    return output


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def started(workdir: Path, step: str) -> bool:
    """The job is past its start-up: its log has its first line (the data or model is being loaded)."""
    log = workdir / LOGS[step]
    return log.is_file() and log.stat().st_size > 0


def same_weights(run: Path, reference: Path) -> bool:
    """The two runs' checkpoints hold equal tensors (torch.save writes a fresh serialization id into each file)."""
    mine, theirs = (torch.load(d / MODEL, weights_only=True)["state_dict"] for d in (run, reference))
    return mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in theirs)


def jobs_run(output: str) -> dict[str, int]:
    return job_counts(output) if "Job stats:" in output else {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the targets with two cores."""
    workdir = tmp_path_factory.mktemp("reference")
    snakemake(workdir, "--", *TARGETS)
    return workdir


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("step", ["train", "randomize"])
def test_a_killed_or_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(reference, tmp_path, step, sig):
    targets = RESULTS if step == "randomize" else [MODEL]
    run = snakemake(tmp_path, "--", *targets, wait=False)
    wait_for(lambda: started(tmp_path, step) or run.poll() is not None, f"the {step} job to start")
    time.sleep(0.3)  # into the job's work (the MLP's randomization runs about 2 s past its first log line)
    assert run.poll() is None, "the run ended before it could be stopped"
    finished = {path: path.stat().st_mtime_ns for path in (tmp_path / "data").rglob("*.gz")}
    if step == "randomize":
        finished[tmp_path / MODEL] = (tmp_path / MODEL).stat().st_mtime_ns
    os.killpg(run.pid, sig)  # Ctrl-C reaches the whole foreground group; a killed session takes every process
    run.communicate(timeout=120)

    partial = [p for pattern in PARTIAL for p in (tmp_path / "results").rglob(pattern) if p not in finished]
    assert not partial, f"left behind after {sig.name} during {step}: {partial}"
    assert not list(tmp_path.rglob(".*.tmp"))
    if sig == signal.SIGKILL:  # nothing could release the lock: Snakemake's message asks for --unlock
        snakemake(tmp_path, "--unlock")
    output = snakemake(tmp_path, "--", *targets)
    redone = {"download_mnist"} | ({"train"} if step == "randomize" else set())
    assert not redone & set(jobs_run(output)), output[-3000:]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())
    assert same_weights(tmp_path, reference)
    compared, problems = compare_results(tmp_path, reference)
    assert compared == (len(RESULTS) if step == "randomize" else 0) and not problems, problems


def test_two_runs_started_at_once_in_one_folder_one_is_refused_and_one_finishes(reference, tmp_path):
    runs = [snakemake(tmp_path, "--", *RESULTS, wait=False) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    codes = sorted(run.returncode for run in runs)
    refused = [output for run, output in zip(runs, outputs) if run.returncode != 0]
    assert codes[0] == 0 and len(refused) == 1, outputs
    assert "Directory cannot be locked" in refused[0] and "--unlock" in refused[0]
    assert compare_results(tmp_path, reference) == (len(RESULTS), [])


def test_the_same_seed_gives_identical_results_and_figures_with_one_core_or_two(reference, tmp_path):
    snakemake(tmp_path, "--", *TARGETS, cores=1)
    compared, problems = compare_results(tmp_path, reference)
    assert compared == len(RESULTS) and not problems, problems
    for figure in FIGURES:
        assert (tmp_path / figure).read_bytes() == (reference / figure).read_bytes(), figure
    assert same_weights(tmp_path, reference)


@pytest.mark.parametrize("setting, reruns", [
    ("training={true_labels: {mlp: {epochs: 2}}}", {"train", "randomize", "figure"}),
    ("training={true_labels: {cnn: {epochs: 2}}}", set()),  # another architecture's setting
    ("randomization={n_images: 2}", {"randomize", "figure"}),
    ("figures={notes: changed}", {"figure"}),
])
def test_a_changed_setting_replans_only_the_jobs_that_read_it(reference, setting, reruns):
    output = subprocess.run([SNAKEMAKE, "--dry-run", "--cores", "2", "--snakefile", str(ROOT / "Snakefile"),
                             "--directory", str(reference), "--config", "preset=smoke", setting, "--", *TARGETS],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "SALIENCY_DATA_MIRROR": str(MIRROR)})
    assert output.returncode == 0, output.stderr[-3000:]
    planned = set(jobs_run(output.stdout)) - {"all", "total"}
    assert planned == reruns, re.findall(r"reason: .*", output.stdout)
