# Shared helpers of the rules: names, settings passed to the CLI, per-job resources. Names and
# settings come from the library (saliency_sanity.contracts, .config and the registries).

import json

from saliency_sanity.config import evaluation_settings, figure_notes, image_sources, randomize_settings, training_settings
from saliency_sanity.contracts import checkpoint_path, evaluation_csv, evaluation_npz, maps_npz, model_name, similarity_csv
from saliency_sanity.data import DATASETS, downloads_of, raw_dir
from saliency_sanity.data.registry import DEMO_SOURCE
from saliency_sanity.models import MODELS
from saliency_sanity.models.published import imagenet_runs
from saliency_sanity.names import evaluation_jobs
from saliency_sanity.randomization import MODES

IMAGENET = config["imagenet"]
# the ImageNet models of this run ('auto' weights resolved), and those left out with the reason
IMAGENET_RUNS = imagenet_runs(IMAGENET, config["data_dir"], config.get("data_mirror"))
for _line in IMAGENET_RUNS.left_out.values():
    logger.warning(f"WARNING: {_line}")
# model name -> (dataset, arch, the randomization modes run for it)
RUNS = {model_name(m["dataset"], m["arch"]): (m["dataset"], m["arch"], m.get("modes", config["randomization"]["modes"]))
        for m in config["models"]}
RUNS.update({model_name("imagenet", arch): ("imagenet", arch, IMAGENET["modes"]) for arch in IMAGENET_RUNS.models})
TRAINED_MODELS = [model for model, (dataset, _, _) in RUNS.items() if dataset != "imagenet"]
# (evaluation, model) pairs of the evaluations section, without the ImageNet models this run leaves out
EVALUATION_JOBS = evaluation_jobs(
    config, {model: dataset for model, (dataset, _, _) in RUNS.items()},
    left_out=[model_name("imagenet", arch) for arch in IMAGENET.get("models") or {} if arch not in IMAGENET_RUNS.models])
# Threads per job. Snakemake caps a job's `threads` at --cores (reading workflow.cores here made --unlock,
# --report, --summary, --dag and the like demand --cores); torch always gets the configured count (the jobs'
# commands read THREADS, not {threads}), because CPU reductions split over another number of threads round
# differently and the results would then depend on --cores.
THREADS = max(1, config.get("threads", 2))
GPU = 1 if config.get("gpu_jobs", False) else 0


def settings(*sections):
    """The named config sections as compact JSON for a CLI --settings argument.

    Passed as params, so Snakemake reruns a job when (and only when) its own settings change.
    """
    return json.dumps({s: config[s] for s in sections}, sort_keys=True, separators=(",", ":"))


def explained_inputs(wildcards):
    """What a job that explains a model reads: its checkpoint, its dataset's files, the ImageNet photos."""
    dataset = RUNS[wildcards.model][0]
    inputs = {"model": str(checkpoint_path(wildcards.model)), "data": raw_files(dataset)}
    if dataset == "imagenet":
        for source in image_sources(IMAGENET):
            if source == DEMO_SOURCE:
                inputs["demo"] = raw_files("imagenet-demo")
            elif source != "skimage":  # a folder's labels file, so that editing it reruns the job
                inputs["labels"] = IMAGENET["labels"] or os.path.join(source, "labels.json")
    return inputs


def raw_files(dataset):
    """The downloaded files a dataset reads (its own, or its base datasets' for a derived one)."""
    return [str(raw_dir(name, config["data_dir"]) / file) for name in downloads_of(dataset)
            for file in DATASETS[name].files]


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(sorted(names, key=len, reverse=True)) or "^$"


rule record_config:
    output:
        report("results/config.yaml", category="Run", labels={"what": "resolved config and library versions"}),
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
    log:
        "results/logs/record_config.log",
    shell:
        "saliency-sanity record-config --settings {params.config:q} --out {output} > {log} 2>&1"
