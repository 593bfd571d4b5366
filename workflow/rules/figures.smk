# Figures: every registered figure for every model whose runs (randomization, evaluations) produce its inputs, the theory
# figures for their fixed models, then figures/index.md (caption, preset, commit) and
# figures/manifest.json (config hash, commit, versions, sha256 of every file: saliency-sanity verify). One rule.

import shlex

from saliency_sanity.figures import FIGURES, figures_for, report_caption

# (figure, model) pairs: per-model figures from each model's modes and evaluations, fixed-model (theory)
# figures once
FIGURE_JOBS = [(name, model) for model, (_, _, modes) in RUNS.items()
               for name in figures_for(modes, [e for e, m in EVALUATION_JOBS if m == model])]
FIGURE_JOBS += [(name, spec.model) for name, spec in FIGURES.items() if spec.model is not None]


def figure_notes_of(wildcards):
    """How the run departs from the paper, for the caption."""
    if FIGURES[wildcards.figure].model is not None:
        return config["theory"]["notes"]
    dataset, arch, _ = RUNS[wildcards.model]
    return figure_notes(config, dataset, arch, IMAGENET_RUNS.models.get(arch, {}).get("weights"))


rule figure:
    input:
        unpack(lambda w: {k: str(v) for k, v in FIGURES[w.figure].input_paths(w.model).items()}),
    output:
        pdf=report("figures/{figure}-{model}.pdf", caption="../report/figure.rst", category="{figure}",
                   subcategory="{model}"),
        png="figures/{figure}-{model}.png",
        record="figures/.index/{figure}-{model}.json",
    params:
        inputs=lambda w, input: " ".join(f"--input {k}={v}" for k, v in input.items()),
        preset=config["preset"],
        notes=figure_notes_of,
        caption=lambda w: report_caption(w.figure, w.model),  # what workflow/report/figure.rst shows
    wildcard_constraints:
        figure=alternatives(FIGURES),
        model=alternatives({model for _, model in FIGURE_JOBS}),
    resources:
        mem_mb=2000,
        runtime=15,
    benchmark:
        "results/benchmarks/figure/{figure}-{model}.tsv"
    log:
        "results/logs/figure/{figure}-{model}.log",
    shell:
        "saliency-sanity figure {wildcards.figure} --model {wildcards.model} {params.inputs} "
        "--out-dir figures --preset {params.preset} --notes {params.notes:q} > {log} 2>&1"


rule figure_index:
    input:
        records=[f"figures/.index/{name}-{model}.json" for name, model in FIGURE_JOBS],
        config=rules.record_config.output[0],
    output:
        index="figures/index.md",
        manifest="figures/manifest.json",
    params:
        left_out=" ".join(f"--left-out {shlex.quote(line)}" for line in IMAGENET_RUNS.left_out.values()),
    log:
        "results/logs/figure_index.log",
    shell:
        "saliency-sanity index --out-dir figures --config-record {input.config} {params.left_out} > {log} 2>&1"
