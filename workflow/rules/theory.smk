# Theory checks (paper section 5): the linear model on MNIST and the 1-D conv + ReLU + sum-pooling
# model on synthetic signals; closed forms vs the registry, tidy CSVs in results/theory/. Their
# figures (one fixed model each: FigureSpec.model) are made by the figure rule.

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
    benchmark:
        "results/benchmarks/theory/linear.tsv"
    log:
        "results/logs/theory/linear.log",
    shell:
        "saliency-sanity theory linear --settings {params.settings:q} --data-dir {params.data_dir} "
        "--threads {THREADS} --out-dir results/theory > {log} 2>&1"


rule theory_convsum:
    output:
        [f"results/theory/{name}" for name in THEORY_OUTPUTS["convsum"]],
    params:
        settings=lambda w: settings("seed", "theory", "similarity"),
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=15,
    benchmark:
        "results/benchmarks/theory/convsum.tsv"
    log:
        "results/logs/theory/convsum.log",
    shell:
        "saliency-sanity theory convsum --settings {params.settings:q} --threads {THREADS} "
        "--out-dir results/theory > {log} 2>&1"
