# Theory checks (paper section 5): the linear model on MNIST and the 1-D conv + ReLU + sum-pooling
# model on synthetic signals; closed forms vs the registry, tidy CSVs in results/theory/, and
# their figures (one fixed model each: FigureSpec.model).

THEORY_FIGURES = {name: spec.model for name, spec in FIGURES.items() if spec.model is not None}
THEORY_OUTPUTS = {
    "linear": ["linear.csv", "linear_training.csv", "linear_maps.npz"],
    "convsum": ["convsum_agreement.csv", "convsum_filters.csv", "convsum_training.csv", "convsum_maps.npz"],
}


rule theory_linear:
    input:
        raw_files("mnist"),
    output:
        [f"results/theory/{name}" for name in THEORY_OUTPUTS["linear"]],
    params:
        settings=lambda w: settings("seed", "theory", "similarity"),
        data_dir=config["data_dir"],
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "results/logs/theory/linear.log",
    shell:
        "saliency-sanity theory linear --settings {params.settings:q} --data-dir {params.data_dir} "
        "--threads {threads} --out-dir results/theory > {log} 2>&1"


rule theory_convsum:
    output:
        [f"results/theory/{name}" for name in THEORY_OUTPUTS["convsum"]],
    params:
        settings=lambda w: settings("seed", "theory", "similarity"),
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "results/logs/theory/convsum.log",
    shell:
        "saliency-sanity theory convsum --settings {params.settings:q} --threads {threads} "
        "--out-dir results/theory > {log} 2>&1"


rule theory_figure:
    input:
        unpack(lambda w: {k: str(v) for k, v in FIGURES[w.figure].input_paths(w.model).items()}),
    output:
        pdf=report("figures/{figure}-{model}.pdf", caption="../report/{figure}.rst", category="theory"),
        png="figures/{figure}-{model}.png",
        record="figures/.index/{figure}-{model}.json",
    params:
        inputs=lambda w, input: " ".join(f"--input {k}={v}" for k, v in input.items()),
        preset=config["preset"],
        notes=config["theory"]["notes"],
    wildcard_constraints:
        figure="|".join(THEORY_FIGURES),
        model="|".join(sorted(set(THEORY_FIGURES.values()))),
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "results/logs/figure/{figure}-{model}.log",
    shell:
        "saliency-sanity figure {wildcards.figure} --model {wildcards.model} {params.inputs} "
        "--out-dir figures --preset {params.preset} --notes {params.notes:q} > {log} 2>&1"
