# Training: each model of the config on its true labels and on randomly permuted labels.


rule train:
    input:
        lambda w: raw_files(w.dataset),
    output:
        checkpoint="results/models/{dataset}-{arch}{suffix}.pt",
        record="results/models/{dataset}-{arch}{suffix}.json",
    params:
        labels=lambda w: "random" if w.suffix else "true",
        settings=lambda w: json.dumps(training_settings(config, w.dataset, w.arch, "random" if w.suffix else "true"),
                                      sort_keys=True),
        device=config["device"],
        seed=config["seed"],
        data_dir=config["data_dir"],
    wildcard_constraints:
        dataset=alternatives(name for name, spec in DATASETS.items() if "train" in spec.splits),
        arch=alternatives(name for name, spec in MODELS.items() if "trained" in spec.weights),
        suffix="|-random-labels",
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPU,
    benchmark:
        "results/benchmarks/train/{dataset}-{arch}{suffix}.tsv"
    log:
        "results/logs/train/{dataset}-{arch}{suffix}.log",
    shell:
        "saliency-sanity train --dataset {wildcards.dataset} --arch {wildcards.arch} "
        "--labels {params.labels} --settings {params.settings:q} --data-dir {params.data_dir} "
        "--device {params.device} --seed {params.seed} --threads {THREADS} "
        "--out {output.checkpoint} > {log} 2>&1"
