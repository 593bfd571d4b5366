# Shared helpers of the rules: names, settings passed to the CLI, per-job resources.

import json

DATASETS = sorted({m["dataset"] for m in config["models"]})
MODELS = [f"{m['dataset']}-{m['arch']}" for m in config["models"]]
MODES = config["randomization"]["modes"]
THREADS = max(1, min(config.get("threads", 2), workflow.cores))
GPU = 1 if config.get("gpu_jobs", False) else 0


def settings(*sections):
    """The named config sections as compact JSON for a CLI --settings argument.

    Passed as params, so Snakemake reruns a job when (and only when) its own settings change.
    """
    return json.dumps({s: config[s] for s in sections}, sort_keys=True, separators=(",", ":"))


def model_spec(name):
    """(dataset, arch) of a model name '<dataset>-<arch>'."""
    dataset, _, arch = name.rpartition("-")
    return dataset, arch


rule record_config:
    output:
        "results/config.yaml",
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
    log:
        "results/logs/record_config.log",
    shell:
        "saliency-sanity record-config --settings {params.config:q} --out {output} > {log} 2>&1"
