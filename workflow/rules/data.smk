# Datasets: copied from the mirror (SALIENCY_DATA_MIRROR or config data_mirror) or downloaded
# from the official hosts, md5-verified, written atomically.

RAW_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def raw_files(dataset):
    """The four raw files of a dataset, as the download rule writes them."""
    return expand("{data_dir}/{dataset}/raw/{file}", data_dir=config["data_dir"], dataset=dataset, file=RAW_FILES)


rule download:
    output:
        expand("{data_dir}/{{dataset}}/raw/{file}", data_dir=config["data_dir"], file=RAW_FILES),
    params:
        data_dir=config["data_dir"],
        mirror=f"--mirror {config['data_mirror']}" if config.get("data_mirror") else "",
    wildcard_constraints:
        dataset="|".join(["mnist", "fashion-mnist"]),
    resources:
        mem_mb=1000,
        runtime=30,
    retries: 1
    log:
        "results/logs/download/{dataset}.log",
    shell:
        "saliency-sanity download {wildcards.dataset} --data-dir {params.data_dir} {params.mirror} > {log} 2>&1"
