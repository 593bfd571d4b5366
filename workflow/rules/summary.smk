# The run on one screen (results/summary.md: jobs, time per rule, models, headline numbers) and every job's time
# (results/benchmarks/jobs.csv, from the benchmark files the rules write). It reads everything rule all asks for, so it runs
# last; Snakemake prints it when a run succeeds, and snakemake --report shows it with the config and the figures.

MODEL_CHECKPOINTS = [str(checkpoint_path(model)) for model in RUNS]
MODEL_CHECKPOINTS += [str(checkpoint_path(model_name(dataset, arch, "random"))) for model, (dataset, arch, modes) in RUNS.items()
                      if any("random_label_model" in MODES[mode].needs for mode in modes)]
CASCADES = [str(similarity_csv(model, "cascading")) for model, (_, _, modes) in RUNS.items() if "cascading" in modes]


rule run_summary:
    input:
        config=rules.record_config.output[0],
        figures=rules.figure_index.output.index,
        manifest=rules.figure_index.output.manifest,
        checkpoints=MODEL_CHECKPOINTS,
        cascades=CASCADES,
        evaluations=[str(evaluation_csv(model, name)) for name, model in EVALUATION_JOBS],
        theory=rules.theory_linear.output + rules.theory_convsum.output,
    output:
        summary=report("results/summary.md", category="Run", labels={"what": "summary"}),
        jobs=report("results/benchmarks/jobs.csv", category="Run", labels={"what": "time of each job"}),
    params:
        checkpoints=lambda w, input: " ".join(f"--checkpoint {path}" for path in input.checkpoints),
        cascades=lambda w, input: " ".join(f"--similarity {path}" for path in input.cascades),
    log:
        "results/logs/run_summary.log",
    shell:
        "saliency-sanity summary --config-record {input.config} {params.checkpoints} {params.cascades} "
        "--figures-index {input.figures} --out {output.summary} --out-jobs {output.jobs} > {log} 2>&1"
