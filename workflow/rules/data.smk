# Datasets: copied from the mirror (SALIENCY_DATA_MIRROR or config data_mirror) or downloaded
# from the official hosts, checksum-verified, written atomically. One rule per downloaded dataset
# of the registry (each has its own files).

for _dataset in [name for name, spec in DATASETS.items() if spec.downloaded]:

    rule:
        name:
            f"download_{_dataset.replace('-', '_')}"
        output:
            raw_files(_dataset),
        params:
            dataset=_dataset,
            data_dir=config["data_dir"],
            mirror=f"--mirror {config['data_mirror']}" if config.get("data_mirror") else "",
        resources:
            mem_mb=1000,
            runtime=30,
        retries: 1
        benchmark:
            f"results/benchmarks/download/{_dataset}.tsv"
        log:
            f"results/logs/download/{_dataset}.log",
        shell:
            "saliency-sanity download {params.dataset} --data-dir {params.data_dir} {params.mirror} > {log} 2>&1"
