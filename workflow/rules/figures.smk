# Figures: every registered figure for every model, then figures/index.md (caption, preset, commit).

from saliency_sanity.figures import FIGURES


FIGURE_MODELS = {model: MODES for model in MODELS}  # model -> the randomization modes run for it
if IMAGENET_MODES:
    FIGURE_MODELS[IMAGENET_MODEL] = IMAGENET_MODES


def figure_names(model):
    """The per-model figures whose inputs the model's randomization modes produce."""
    return [
        name for name, spec in FIGURES.items()
        if spec.model is None and all(key.rpartition("_")[0] in FIGURE_MODELS[model] for key in spec.inputs)
    ]


def figure_notes(model):
    return imagenet_notes() if model == IMAGENET_MODEL else config["figures"]["notes"]


rule figure:
    input:
        unpack(lambda w: {k: str(v) for k, v in FIGURES[w.figure].input_paths(w.model).items()}),
    output:
        pdf=report("figures/{figure}-{model}.pdf", caption="../report/{figure}.rst", category="{figure}"),
        png="figures/{figure}-{model}.png",
        record="figures/.index/{figure}-{model}.json",
    params:
        inputs=lambda w, input: " ".join(f"--input {k}={v}" for k, v in input.items()),
        preset=config["preset"],
        notes=lambda w: figure_notes(w.model),
    wildcard_constraints:
        figure="|".join(name for name, spec in FIGURES.items() if spec.model is None),
        model="|".join(FIGURE_MODELS),
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "results/logs/figure/{figure}-{model}.log",
    shell:
        "saliency-sanity figure {wildcards.figure} --model {wildcards.model} {params.inputs} "
        "--out-dir figures --preset {params.preset} --notes {params.notes:q} > {log} 2>&1"


rule figure_index:
    input:
        [f"figures/.index/{name}-{model}.json" for model in FIGURE_MODELS for name in figure_names(model)],
        [f"figures/.index/{name}-{spec.model}.json" for name, spec in FIGURES.items() if spec.model is not None],
    output:
        "figures/index.md",
    log:
        "results/logs/figure_index.log",
    shell:
        "saliency-sanity index --out-dir figures > {log} 2>&1"
