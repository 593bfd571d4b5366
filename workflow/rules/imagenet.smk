# The ImageNet models (imagenet.models): each built with its published weights (or untrained with
# weights: random) and written as a checkpoint like a trained MNIST model; their randomization
# tests run through the one randomize rule (randomization.smk) with the imagenet section's settings.


rule imagenet_model:
    output:
        model=str(checkpoint_path(model_name("imagenet", "{arch}"))),
        record=str(checkpoint_path(model_name("imagenet", "{arch}")).with_suffix(".json")),
    params:
        settings=lambda w: json.dumps({"seed": config["seed"], **IMAGENET_RUNS.models[w.arch]}, sort_keys=True,
                                      separators=(",", ":")),
        data_dir=config["data_dir"],
        mirror=f"--mirror {config['data_mirror']}" if config.get("data_mirror") else "",
    wildcard_constraints:
        arch=alternatives(IMAGENET_RUNS.models),
    resources:
        mem_mb=3000,
        runtime=30,
    benchmark:
        "results/benchmarks/imagenet_model/{arch}.tsv"
    log:
        "results/logs/imagenet_model/{arch}.log",
    shell:
        "saliency-sanity imagenet-model --arch {wildcards.arch} --settings {params.settings:q} "
        "--data-dir {params.data_dir} {params.mirror} --out {output.model} > {log} 2>&1"
