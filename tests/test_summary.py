"""The run's one-screen summary: job times from Snakemake's benchmark files, the models' records, and the
headline numbers computed from the cascading CSVs (checked against hand-computed means)."""

import csv
import json

import pandas as pd
import torch
import yaml

from saliency_sanity.contracts import SIMILARITY_COLUMNS
from saliency_sanity.summary import headline, job_times, write_summary


def _benchmark(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\n" f"{seconds}\t0:00:01\t{rss}\n")


def _cascade(path):
    """Two stages; IG with its configured baseline (zero, written first) and a second one the headline must skip."""
    rows = []
    for stage_index, stage in enumerate(["original", "logits"]):
        for method, baseline, values in [("gradient", "none", (1.0, 0.2)), ("integrated_gradients", "zero", (1.0, 0.9)),
                                         ("integrated_gradients", "uniform", (1.0, 0.1))]:
            for image, value in enumerate(values if stage_index else (1.0, 1.0)):
                rows.append(dict(dataset="mnist", model="mnist-cnn", mode="cascading", stage=stage,
                                 stage_index=stage_index, method=method, baseline=baseline, metric="spearman_abs",
                                 image=image, value=value if stage_index else 1.0))
    pd.DataFrame(rows, columns=list(SIMILARITY_COLUMNS)).to_csv(path, index=False)


def test_the_headline_is_the_mean_after_the_whole_cascade_with_each_methods_configured_baseline(tmp_path):
    _cascade(tmp_path / "c.csv")
    table = headline([tmp_path / "c.csv"])
    assert table.loc["gradient", "mnist-cnn"] == round((1.0 + 0.2) / 2, 2)
    assert table.loc["integrated_gradients", "mnist-cnn"] == round((1.0 + 0.9) / 2, 2)  # not uniform's 0.55


def test_job_times_reads_each_benchmark_file_as_one_job(tmp_path):
    _benchmark(tmp_path / "train" / "mnist-cnn.tsv", 12.5, 900.0)
    _benchmark(tmp_path / "randomize" / "mnist-cnn-cascading.tsv", 30.0, "-")
    jobs = job_times(tmp_path)
    assert sorted(zip(jobs["rule"], jobs["job"], jobs["seconds"])) == [
        ("randomize", "mnist-cnn-cascading", 30.0), ("train", "mnist-cnn", 12.5)]


def test_the_summary_names_the_run_its_jobs_models_figures_and_headline(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"config": {"preset": "smoke", "seed": 3, "threads": 2, "device": "cpu"}}))
    checkpoint = tmp_path / "mnist-cnn.pt"
    torch.save({}, checkpoint)
    checkpoint.with_suffix(".json").write_text(json.dumps({"test_acc": 0.98, "train_acc": 0.99, "epochs": 2}))
    index = tmp_path / "index.md"
    index.write_text("# Figures\n\n## a.png\n\n## b.png\n\n## Left out\n")
    _benchmark(tmp_path / "bench" / "train" / "mnist-cnn.tsv", 60.0, 900.0)
    _benchmark(tmp_path / "bench" / "train" / "mnist-mlp.tsv", 30.0, 800.0)
    _cascade(tmp_path / "c.csv")
    out, jobs = tmp_path / "summary.md", tmp_path / "jobs.csv"

    write_summary(config, [checkpoint], [tmp_path / "c.csv"], out, jobs, benchmarks_dir=tmp_path / "bench",
                  figures_index=index)

    text = out.read_text()
    assert "Preset `smoke`, seed 3" in text and "2 jobs benchmarked, 1.5 min" in text
    assert "**Figures:** 2 in" in text
    assert "| train | 2 | 90.0 | 60.0 |" in text
    assert "| mnist-cnn | 0.98 | 0.99 | trained here |" in text
    assert "| integrated_gradients | 0.95 |" in text
    assert len(text.splitlines()) < 60  # one screen
    with jobs.open() as handle:
        assert [row["seconds"] for row in csv.DictReader(handle)] == ["60.0", "30.0"]
