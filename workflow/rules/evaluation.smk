# Evaluations (the attribution-baselines study: IG's convergence, the output along the path, the
# ablation tests): every registered evaluation on the models its config section names. One rule.

from saliency_sanity.evaluation import EVALUATIONS


rule evaluate:
    input:
        unpack(explained_inputs),
    output:
        csv=str(evaluation_csv("{model}", "{evaluation}")),
        maps=str(evaluation_npz("{model}", "{evaluation}")),
    params:
        settings=lambda w: json.dumps(evaluation_settings(config, w.evaluation, *RUNS[w.model][:2],
                                                          reads=EVALUATIONS[w.evaluation].reads), sort_keys=True,
                                      separators=(",", ":")),
        data_dir=config["data_dir"],
    wildcard_constraints:
        model=alternatives(RUNS),
        evaluation=alternatives(EVALUATIONS),
    threads: THREADS
    resources:
        mem_mb=lambda w: 8000 if RUNS[w.model][0] == "imagenet" else 4000,
        runtime=lambda w: 240 if RUNS[w.model][0] == "imagenet" else 60,
        gpu=GPU,
    benchmark:
        "results/benchmarks/evaluate/{model}-{evaluation}.tsv"
    log:
        "results/logs/evaluate/{model}-{evaluation}.log",
    shell:
        "saliency-sanity evaluate {wildcards.evaluation} --model {input.model} --settings {params.settings:q} "
        "--data-dir {params.data_dir} --threads {THREADS} --out-csv {output.csv} --out-maps {output.maps} > {log} 2>&1"
