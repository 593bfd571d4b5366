# saliency-sanity: one DAG from the datasets to the figures.
#   snakemake --cores all                          # default preset
#   snakemake --cores all --config preset=smoke    # minutes, CI
# The config is workflow/config/default.yaml, the chosen preset on top, then --config overrides;
# it is validated against workflow/schemas/config.schema.yaml, and its names against the registries,
# before any job runs.

from snakemake.utils import min_version, validate

min_version("8.0")

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


rule all:
    input:
        "results/config.yaml",
        rules.figure_index.output,
        [str(evaluation_csv(model, name)) for name, model in EVALUATION_JOBS],  # also those no figure reads
        rules.theory_linear.output,
        rules.theory_convsum.output,
