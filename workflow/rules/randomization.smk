# Model-parameter (cascading, independent) and label randomization tests: every registered
# method on the same test images, similarity of each stage's maps to the original's.


def randomization_inputs(wildcards):
    dataset, _ = model_spec(wildcards.model)
    inputs = {
        "model": f"results/models/{wildcards.model}.pt",
        "data": raw_files(dataset),
    }
    if wildcards.mode == "labels":
        inputs["random_label_model"] = f"results/models/{wildcards.model}-random-labels.pt"
    return inputs


rule randomize:
    input:
        unpack(randomization_inputs),
    output:
        csv="results/randomization/{model}-{mode}.csv",
        maps="results/maps/{model}-{mode}.npz",
    params:
        settings=lambda w: settings("seed", "device", "randomization", "methods", "similarity"),
        random_label=lambda w, input: f"--random-label-model {input.random_label_model}" if w.mode == "labels" else "",
        data_dir=config["data_dir"],
    wildcard_constraints:
        model="[a-z-]+-(cnn|mlp)",
        mode="cascading|independent|labels",
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPU,
    log:
        "results/logs/randomize/{model}-{mode}.log",
    shell:
        "saliency-sanity randomize --model {input.model} --mode {wildcards.mode} {params.random_label} "
        "--settings {params.settings:q} --data-dir {params.data_dir} --threads {threads} "
        "--out-csv {output.csv} --out-maps {output.maps} > {log} 2>&1"
