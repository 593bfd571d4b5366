# The ImageNet model: Inception v3 with torchvision's weights (or untrained with weights: random),
# written as a checkpoint like a trained MNIST model; its randomization tests run through the one
# randomize rule (randomization.smk) with the imagenet section's settings.


rule imagenet_model:
    output:
        model=str(checkpoint_path(model_name("imagenet", "inception_v3"))),
        record=str(checkpoint_path(model_name("imagenet", "inception_v3")).with_suffix(".json")),
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
