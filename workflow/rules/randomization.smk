# Randomization tests: every registered method on the same images, the similarity of each stage's
# maps to the original's, for every model of the config (MNIST family and ImageNet) and each of its
# modes. One rule: a mode that needs the model trained on random labels (labels) gets it as input.


def randomization_inputs(wildcards):
    inputs = explained_inputs(wildcards)
    if "random_label_model" in MODES[wildcards.mode].needs:
        dataset, arch, _ = RUNS[wildcards.model]
        inputs["random_label_model"] = str(checkpoint_path(model_name(dataset, arch, "random")))
    return inputs


rule randomize:
    input:
        unpack(randomization_inputs),
    output:
        csv=str(similarity_csv("{model}", "{mode}")),
        maps=str(maps_npz("{model}", "{mode}")),
    params:
        settings=lambda w: json.dumps(randomize_settings(config, RUNS[w.model][0], RUNS[w.model][1]), sort_keys=True,
                                      separators=(",", ":")),
        random_label=lambda w, input: f"--random-label-model {input.random_label_model}"
        if "random_label_model" in input.keys() else "",
        data_dir=config["data_dir"],
    wildcard_constraints:
        model=alternatives(RUNS),
        mode=alternatives(MODES),
    threads: THREADS
    resources:
        mem_mb=lambda w: 8000 if RUNS[w.model][0] == "imagenet" else 6000,
        runtime=lambda w: 240 if RUNS[w.model][0] == "imagenet" else 120,
        gpu=GPU,
    benchmark:
        "results/benchmarks/randomize/{model}-{mode}.tsv"
    log:
        "results/logs/randomize/{model}-{mode}.log",
    shell:
        "saliency-sanity randomize --model {input.model} --mode {wildcards.mode} {params.random_label} "
        "--settings {params.settings:q} --data-dir {params.data_dir} --threads {THREADS} "
        "--out-csv {output.csv} --out-maps {output.maps} > {log} 2>&1"
