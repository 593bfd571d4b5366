# Figures: every registered figure for every model, then figures/index.md (caption, preset, commit).

from saliency_sanity.figures import FIGURES


def figure_names():
    """The per-model figures whose inputs this config's randomization modes produce."""
    return [
        name for name, spec in FIGURES.items()
        if spec.model is None and all(key.rpartition("_")[0] in MODES for key in spec.inputs)
    ]


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
        notes=config["figures"]["notes"],
    wildcard_constraints:
        figure="|".join(name for name, spec in FIGURES.items() if spec.model is None),
        model="|".join(MODELS),
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
        expand("figures/.index/{figure}-{model}.json", figure=figure_names(), model=MODELS),
        [f"figures/.index/{name}-{spec.model}.json" for name, spec in FIGURES.items() if spec.model is not None],
    output:
        "figures/index.md",
    log:
        "results/logs/figure_index.log",
    shell:
        "saliency-sanity index --out-dir figures > {log} 2>&1"
