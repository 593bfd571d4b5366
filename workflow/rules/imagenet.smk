# The ImageNet experiment: Inception v3 (torchvision's weights, or untrained with weights: random)
# on natural images, cascading and independent randomization of its 17 blocks, every method.
# The randomization step is the same CLI step as for the MNIST models, with the imagenet section's
# settings (its methods on top of the methods section).

IMAGENET = config["imagenet"]
IMAGENET_MODEL = "imagenet-inception_v3"
IMAGENET_MODES = IMAGENET["modes"] if IMAGENET["enabled"] else []


def imagenet_settings():
    """The randomize step's settings for the ImageNet model, as compact JSON."""
    methods = {name: dict(params or {}) for name, params in config["methods"].items()}
    for name, params in IMAGENET["methods"].items():
        methods[name] = {**methods.get(name, {}), **(params or {})}
    return json.dumps({
        "seed": config["seed"],
        "device": config["device"],
        "randomization": {key: IMAGENET[key] for key in ("n_images", "explain", "batch_size", "grid_images", "batchnorm")},
        "methods": methods,
        "similarity": IMAGENET["similarity"],
        "images": {"source": IMAGENET["images"], "labels": IMAGENET["labels"], "size": IMAGENET["image_size"]},
    }, sort_keys=True, separators=(",", ":"))


def imagenet_notes():
    """Caption notes of the ImageNet figures; untrained weights are always said."""
    notes = IMAGENET["notes"]
    if IMAGENET["weights"] == "random":
        notes += ". UNTRAINED Inception v3 (imagenet.weights: random): a check of the pipeline, not the paper's result"
    return notes


def imagenet_image_inputs(wildcards):
    """The image folder's labels file, so that editing it reruns the tests (nothing for skimage)."""
    source = IMAGENET["images"]
    if source in (None, "skimage"):
        return []
    return [IMAGENET["labels"] or os.path.join(source, "labels.json")]


if IMAGENET["enabled"] and not IMAGENET["images"]:
    raise ValueError(
        "config key imagenet.images is not set: give a folder of ImageNet images with labels.json "
        "(--config 'imagenet={images: /path/to/folder}'), or 'skimage' for the bundled photos, "
        "or disable the experiment with imagenet.enabled: false"
    )


rule imagenet_model:
    output:
        model=f"results/models/{IMAGENET_MODEL}.pt",
        record=f"results/models/{IMAGENET_MODEL}.json",
    params:
        settings=lambda w: settings("seed", "imagenet"),
        data_dir=config["data_dir"],
        mirror=f"--mirror {config['data_mirror']}" if config.get("data_mirror") else "",
    resources:
        mem_mb=3000,
        runtime=30,
    log:
        "results/logs/imagenet_model.log",
    shell:
        "saliency-sanity imagenet-model --settings {params.settings:q} --data-dir {params.data_dir} "
        "{params.mirror} --out {output.model} > {log} 2>&1"


rule randomize_imagenet:
    input:
        model=rules.imagenet_model.output.model,
        labels=imagenet_image_inputs,
    output:
        csv=f"results/randomization/{IMAGENET_MODEL}-{{mode}}.csv",
        maps=f"results/maps/{IMAGENET_MODEL}-{{mode}}.npz",
    params:
        settings=lambda w: imagenet_settings(),
    wildcard_constraints:
        mode="cascading|independent",
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPU,
    log:
        f"results/logs/randomize/{IMAGENET_MODEL}-{{mode}}.log",
    shell:
        "saliency-sanity randomize --model {input.model} --mode {wildcards.mode} "
        "--settings {params.settings:q} --threads {threads} "
        "--out-csv {output.csv} --out-maps {output.maps} > {log} 2>&1"
