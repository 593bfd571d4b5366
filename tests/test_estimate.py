"""The cost printed before a run: recorded job times, looked up by job name, scaled by this machine's speed."""

import json
import os

import pytest

from saliency_sanity import estimate
from saliency_sanity.estimate import estimate_seconds, job_key, load_job_times, measured_job_times, plan_lines


def test_a_job_is_named_by_its_log_and_a_missing_one_takes_its_steps_median():
    assert job_key("results/logs/randomize/mnist-cnn-cascading.log") == "randomize/mnist-cnn-cascading"
    measured = {"train/a": 10.0, "train/b": 20.0, "train/c": 60.0, "figure/x": 1.0}
    assert estimate_seconds(["train/a", "train/new", "figure/y", "theory/z"], measured) == [10.0, 20.0, 1.0, 0.0]


def test_the_plan_scales_recorded_times_by_this_machines_speed(monkeypatch):
    table = {"presets": {"smoke": {"probe_seconds": 0.1, "threads": 2,
                                   "jobs": {"train/mnist-cnn": 60.0, "randomize/mnist-cnn-cascading": 120.0}}}}
    monkeypatch.setattr(estimate, "probe_seconds", lambda threads: 0.2)  # this machine: half as fast
    planned = [("train", "results/logs/train/mnist-cnn.log"),
               ("randomize", "results/logs/randomize/mnist-cnn-cascading.log")]
    lines = plan_lines(planned, "smoke", cores=4, threads=2, table=table)
    assert lines[0] == "Planned: 2 jobs."
    assert lines[1].split() == ["randomize", "1", "job", "~", "4.0", "min"]  # 120 s x 2
    assert lines[-1].startswith("Estimated: 6.0 min of job time, about 3.0 min on 4 cores (2 jobs of 2 threads")
    on_a_cluster = plan_lines(planned, "smoke", cores=None, threads=2, table=table)[-1]
    assert on_a_cluster.startswith("Estimated: 6.0 min of job time on nodes like this machine")
    assert "no recorded job times" in plan_lines(planned, "paper", 4, 2, table=table)[-1].lower()


def test_job_times_are_read_from_snakemakes_records_of_a_finished_run(tmp_path):
    metadata = tmp_path / ".snakemake" / "metadata"
    metadata.mkdir(parents=True)
    (metadata / "a").write_text(json.dumps({"rule": "train", "log": ["results/logs/train/mnist-cnn.log"],
                                            "starttime": 100.0, "endtime": 142.25}))
    (metadata / "b").write_text(json.dumps({"rule": "all", "log": [], "starttime": 1.0, "endtime": 2.0}))
    assert measured_job_times(tmp_path) == {"train/mnist-cnn": 42.2}


@pytest.mark.parametrize("preset", ["smoke", "default"])
def test_the_shipped_table_holds_the_presets_ci_and_users_run_first(preset):
    recorded = load_job_times()["presets"][preset]
    assert recorded["probe_seconds"] > 0 and any(key.startswith("randomize/") for key in recorded["jobs"])


def test_the_probe_times_real_work():
    assert 0 < estimate.probe_seconds(threads=max(1, min(2, os.cpu_count() or 1)), repeats=1) < 30
