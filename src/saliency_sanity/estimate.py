"""What a run will cost, said before its first job starts.

Snakemake's ``onstart`` hands :func:`plan_lines` the jobs it is about to run. Each job is looked up by its
log's name (``results/logs/<step>/<job>.log``; the benchmark files use the same names) in a table of job
times measured on a 2-core machine (``job_times.json``, shipped with the package, written by
``saliency-sanity job-times`` from a finished run's Snakemake records). The times are scaled by this
machine's speed relative to that machine's: both time one fixed training step (:func:`probe_seconds`).
"""

from __future__ import annotations

import json
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

from saliency_sanity.runtime import write_json

JOB_TIMES = "job_times.json"
LOGS_PREFIX = "results/logs/"


def probe_seconds(threads: int, repeats: int = 10) -> float:
    """Best of ``repeats`` timings of one forward and backward pass of a small CNN on 128 MNIST-sized inputs
    (a fraction of a second): this machine's speed at the kind of work the jobs do."""
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(64 * 24 * 24, 10))
    inputs = torch.randn(128, 1, 28, 28, generator=generator)
    best = float("inf")
    for _ in range(repeats + 1):  # the first warms the allocator and kernels up
        begin = time.perf_counter()
        net(inputs).sum().backward()
        best = min(best, time.perf_counter() - begin)
    return best


def job_key(log: str | Path) -> str:
    """A job's name in the table: its log path below ``results/logs/`` without the suffix."""
    log = str(log)
    return str(Path(log[len(LOGS_PREFIX):] if log.startswith(LOGS_PREFIX) else log).with_suffix(""))


def load_job_times() -> dict:
    return json.loads(resources.files("saliency_sanity").joinpath(JOB_TIMES).read_text())


def measured_job_times(run_dir: Path) -> dict[str, float]:
    """Wall seconds of each job of a finished run, from Snakemake's records of its outputs
    (``.snakemake/metadata``: rule, log, start and end time)."""
    times = {}
    for record_file in sorted((Path(run_dir) / ".snakemake" / "metadata").iterdir()):
        record = json.loads(record_file.read_text())
        if record.get("log") and record.get("starttime") and record.get("endtime"):
            times[job_key(record["log"][0])] = round(record["endtime"] - record["starttime"], 1)
    return times


def record_job_times(run_dir: Path, preset: str, threads: int, out: Path) -> Path:
    """Add (or replace) one preset's measured job times in the table at ``out``, with this machine's probe."""
    table = json.loads(Path(out).read_text()) if Path(out).is_file() else {"presets": {}}
    table["presets"][preset] = {"probe_seconds": round(probe_seconds(threads), 4), "threads": threads,
                                "jobs": measured_job_times(run_dir)}
    write_json(out, table)
    return Path(out)


def estimate_seconds(keys: Iterable[str], measured: Mapping[str, float]) -> list[float]:
    """Each job's measured time; a job the table lacks takes the median of its step's measured jobs (0 if none)."""
    per_step: dict[str, list[float]] = {}
    for key, seconds in measured.items():
        per_step.setdefault(key.split("/")[0], []).append(seconds)
    return [measured[key] if key in measured else statistics.median(per_step.get(key.split("/")[0], [0.0]))
            for key in keys]


def plan_lines(planned: list[tuple[str, str]], preset: str, cores: int | None, threads: int,
               table: Mapping | None = None) -> list[str]:
    """The plan as printed before the first job: jobs and estimated minutes per rule, and the total.

    ``planned`` holds (rule, log path) for each job that will run; ``cores`` is None on a cluster executor,
    where the wall time depends on how many jobs the cluster runs at once."""
    table = load_job_times() if table is None else table
    lines = [f"Planned: {len(planned)} jobs."]
    recorded = table["presets"].get(preset)
    if recorded is None:
        return lines + [f"No recorded job times for preset '{preset}' (recorded: {', '.join(table['presets'])}); "
                        "the README's Presets table says what to expect."]
    scale = probe_seconds(threads) / recorded["probe_seconds"]
    seconds = [s * scale for s in estimate_seconds((job_key(log) for _, log in planned), recorded["jobs"])]
    per_rule: dict[str, list[float]] = {}
    for (rule, _), estimate in zip(planned, seconds):
        per_rule.setdefault(rule, []).append(estimate)
    lines += [f"  {rule:<16} {len(times):>4} job{'s' if len(times) != 1 else ' '}  ~{sum(times) / 60:6.1f} min"
              for rule, times in sorted(per_rule.items(), key=lambda item: -sum(item[1]))]
    source = f"from the times recorded for '{preset}' scaled by this machine's speed ({scale:.2f}x their time)"
    if cores is None:
        return lines + [f"Estimated: {sum(seconds) / 60:.1f} min of job time on nodes like this machine, {source}; "
                        "the wall time depends on how many jobs the cluster runs at once."]
    parallel = max(1, cores // max(1, threads))
    lines.append(f"Estimated: {sum(seconds) / 60:.1f} min of job time, about {sum(seconds) / parallel / 60:.1f} min on "
                 f"{cores} cores ({parallel} job{'s' if parallel != 1 else ''} of {threads} threads at once), {source}.")
    return lines
