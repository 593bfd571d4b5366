"""The run on one screen: what ran, how long each job took, where the figures are, and the headline numbers.

``saliency-sanity summary`` writes ``results/summary.md`` (Snakemake prints it when a run succeeds, and
``snakemake --report`` shows it) and ``results/benchmarks/jobs.csv`` (every job's wall time and peak memory, from
the Snakemake benchmark files in ``results/benchmarks/``). The headline is the paper's: after the whole
cascade of re-initializations, how similar each method's maps still are to the original model's.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from saliency_sanity.contracts import BENCHMARKS_DIR, record_path
from saliency_sanity.data.download import file_hash
from saliency_sanity.runtime import write_text

HEADLINE_MODE = "cascading"
HEADLINE_METRIC = "spearman_abs"
JOB_COLUMNS = ("rule", "job", "seconds", "max_rss_mb")


def job_times(benchmarks_dir: Path = BENCHMARKS_DIR) -> pd.DataFrame:
    """One row per job that Snakemake benchmarked (``benchmarks/<rule>/<job>.tsv``): wall seconds, peak RSS."""
    rows = []
    for path in sorted(Path(benchmarks_dir).glob("*/*.tsv")):
        table = pd.read_csv(path, sep="\t")
        rss = pd.to_numeric(table["max_rss"], errors="coerce").max() if "max_rss" in table else float("nan")
        rows.append((path.parent.name, path.stem, float(table["s"].iloc[-1]), rss))
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


def model_rows(checkpoints: Iterable[Path]) -> list[dict[str, object]]:
    """Each model's record beside its checkpoint: accuracies, where the weights came from, checksums."""
    rows = []
    for checkpoint in checkpoints:
        record = json.loads(record_path(checkpoint).read_text())
        rows.append({
            "model": Path(checkpoint).stem,
            "test_acc": record.get("test_acc"),
            "train_acc": record.get("train_acc"),
            "weights": "trained here" if "epochs" in record else Path(str(record.get("weights", "?"))).name,
            "weights_sha256": (record.get("weights_sha256") or "")[:12],
            "checkpoint_sha256": file_hash(Path(checkpoint), "sha256")[:12],
        })
    return rows


def headline(similarity_csvs: Iterable[Path]) -> pd.DataFrame:
    """Mean Spearman rank correlation of absolute maps (the paper's) between each method's maps for the
    original model and after the whole cascade
    (methods x models), each path method with its configured baseline (the CSV's first for it; the
    baselines study has the others): near 1, the maps did not notice the model was destroyed."""
    columns = {}
    for path in similarity_csvs:
        frame = pd.read_csv(path)
        frame = frame[(frame["mode"] == HEADLINE_MODE) & (frame["metric"] == HEADLINE_METRIC)]
        if frame.empty:
            continue
        configured = frame.drop_duplicates("method").set_index("method")["baseline"]  # written before the others
        last = frame[(frame["stage_index"] == frame["stage_index"].max())
                     & (frame["baseline"].to_numpy() == configured.loc[frame["method"]].to_numpy())]
        columns[frame["model"].iloc[0]] = last.groupby("method", sort=False)["value"].mean()
    return pd.DataFrame(columns).round(2)


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    frame = frame.reset_index() if index else frame
    cells = [[str(c) for c in frame.columns]] + [["" if pd.isna(v) else str(v) for v in row]
                                                  for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines)


def write_summary(config_record: Path, checkpoints: list[Path], similarity_csvs: list[Path], out_md: Path,
                  out_jobs: Path, benchmarks_dir: Path = BENCHMARKS_DIR, figures_index: Path = Path("figures/index.md")
                  ) -> None:
    """``out_md`` (one screen) and ``out_jobs`` (every job's time), both written atomically."""
    config = yaml.safe_load(Path(config_record).read_text())["config"]
    jobs = job_times(benchmarks_dir)
    buffer = io.StringIO()
    jobs.round({"seconds": 1, "max_rss_mb": 0}).to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    write_text(out_jobs, buffer.getvalue())
    per_rule = jobs.groupby("rule")["seconds"].agg(["count", "sum", "max"]).sort_values("sum", ascending=False)
    per_rule.columns = ["jobs", "seconds", "longest job (s)"]
    figures = sum(1 for line in Path(figures_index).read_text().splitlines() if line.startswith("## ")
                  and not line.startswith("## Left out"))
    lines = [
        "# Run summary", "",
        f"Preset `{config['preset']}`, seed {config['seed']}, {config.get('threads')} torch threads per job, "
        f"device `{config['device']}`. {len(jobs)} jobs benchmarked, {jobs['seconds'].sum() / 60:.1f} min of job time "
        f"(per job: `{out_jobs}`).", "",
        f"**Figures:** {figures} in `{figures_index}` (captions, inputs, commit; `figures/manifest.json`: checksums, "
        "`saliency-sanity verify`). All of it in one HTML: `snakemake --report report.html`.", "",
    ]
    if not jobs.empty:
        lines += ["## Job time per rule", "", markdown_table(per_rule.round(1)), ""]
    lines += [
        "## Models", "", markdown_table(pd.DataFrame(model_rows(checkpoints)).round(4), index=False), "",
    ]
    table = headline(similarity_csvs)
    if not table.empty:
        lines += ["## Headline: does a method notice the model was destroyed?", "",
                  "Mean Spearman rank correlation (of absolute maps) between each method's maps for the original "
                  "model and after the whole cascade of re-initializations: near 1, the map ignores the weights "
                  "(edge detectors, by construction); near 0, it depends on them.", "",
                  markdown_table(table.rename_axis("method")), ""]
    write_text(out_md, "\n".join(lines))
