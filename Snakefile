# saliency-sanity: one DAG from the datasets to the figures.
#   snakemake --cores all                          # default preset
#   snakemake --cores all --config preset=smoke    # minutes, CI
# The config is workflow/config/default.yaml, the chosen preset on top, then --config overrides;
# it is validated against workflow/schemas/config.schema.yaml, and its names against the registries,
# before any job runs.

import sys
import time

from snakemake.utils import min_version, validate

min_version("8.0")
_PLANNED_AT = time.time()

from saliency_sanity.config import check_runnable, resolve_config, typed_overrides

_resolved = resolve_config(overrides=typed_overrides(dict(config)), workflow_dir=Path(workflow.basedir) / "workflow")
config.clear()
config.update(_resolved)
validate(config, "workflow/schemas/config.schema.yaml")
check_runnable(config)

from saliency_sanity.names import check_names  # after the cheap checks: a bad value fails before torch is imported

check_names(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/imagenet.smk"
include: "workflow/rules/randomization.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/summary.smk"


rule all:
    input:
        "results/config.yaml",
        rules.figure_index.output,
        [str(evaluation_csv(model, name)) for name, model in EVALUATION_JOBS],  # also those no figure reads
        rules.theory_linear.output,
        rules.theory_convsum.output,
        rules.run_summary.output,


onstart:
    # the plan and what it will cost, before the first job (Snakemake skips this on --dry-run)
    from saliency_sanity.estimate import plan_lines

    planned = [(job.rule.name, job.log[0]) for job in workflow.dag.needrun_jobs() if job.log]
    # resource_settings.cores is None under a cluster executor (workflow.cores would raise there)
    print("\n".join(plan_lines(planned, config["preset"], workflow.resource_settings.cores, THREADS)))


onsuccess:
    # the one-screen summary, when this run wrote it (not a stale one after a run of one target)
    if Path("results/summary.md").is_file() and Path("results/summary.md").stat().st_mtime >= _PLANNED_AT:
        print(Path("results/summary.md").read_text())


onerror:
    # Snakemake shows a failed job as "message: None"; the job's own error line is in its log
    from saliency_sanity.joblogs import failed_jobs

    for log, line in failed_jobs(since=_PLANNED_AT):
        print(f"{log}: {line}", file=sys.stderr)
