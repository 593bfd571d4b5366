"""``saliency-sanity <step>``: the one entry point that the workflow's thin rules call.

Each subcommand parses its arguments, sets up logging and torch threads, and calls one library
function; all experiment logic lives in the library modules.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

log = logging.getLogger("saliency_sanity")

# Errors that name a bad input and its fix (bad config value, missing or corrupt file, unknown
# method or figure); anything else is a bug and keeps its traceback.
def _user_errors() -> tuple[type[Exception], ...]:
    from saliency_sanity.data import DataError
    from saliency_sanity.registry import UnknownNameError
    from saliency_sanity.runtime import DiskFullError

    return (ValueError, FileNotFoundError, DataError, UnknownNameError, DiskFullError)


def _json_arg(text: str) -> dict:
    """A JSON object given inline or as ``@path``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _one_of(value: str, names: list[str], what: str) -> str:
    """The command's name argument, checked against the registry's names (argparse's ``choices`` would import
    every registry, and with them torch, for every command: seconds per job)."""
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of {names}")
    return value


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_download(args: argparse.Namespace) -> None:
    from saliency_sanity.data import DATASETS, fetch_dataset

    _one_of(args.dataset, [name for name, spec in DATASETS.items() if spec.downloaded], "dataset to download")

    raw = fetch_dataset(args.dataset, args.data_dir, mirror=args.mirror)
    log.info("%s ready in %s", args.dataset, raw)


def cmd_train(args: argparse.Namespace) -> None:
    from saliency_sanity.data import DATASETS
    from saliency_sanity.models import MODELS
    from saliency_sanity.training import train_model

    _one_of(args.dataset, [name for name, spec in DATASETS.items() if "train" in spec.splits], "dataset to train on")
    _one_of(args.arch, [name for name, spec in MODELS.items() if "trained" in spec.weights], "trainable architecture")

    record = train_model(
        args.dataset, args.arch, args.labels, args.settings, args.data_dir, args.out,
        device=args.device, seed=args.seed,
    )
    log.info("trained %s: %s", args.out, json.dumps({k: record[k] for k in ("train_acc", "test_acc")}))


def cmd_imagenet_model(args: argparse.Namespace) -> None:
    from saliency_sanity.models import MODELS
    from saliency_sanity.models.published import write_published_checkpoint

    _one_of(args.arch, [name for name, spec in MODELS.items() if spec.published is not None],
            "architecture with published weights")

    record = write_published_checkpoint(args.arch, args.settings, args.data_dir, args.out, mirror=args.mirror)
    log.info("wrote %s (weights: %s)", args.out, record["weights"])


def cmd_randomize(args: argparse.Namespace) -> None:
    from saliency_sanity.randomization import MODES, run_randomization_test

    _one_of(args.mode, MODES.names(), "randomization mode")

    run_randomization_test(
        args.model, args.mode, args.settings, args.out_csv, args.out_maps,
        random_label_model_path=args.random_label_model, data_dir=args.data_dir,
        device=args.settings.get("device", "auto"),
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from saliency_sanity.evaluation import EVALUATIONS, run_evaluation

    _one_of(args.name, EVALUATIONS.names(), "evaluation")

    run_evaluation(args.name, args.model, args.settings, args.out_csv, args.out_maps, data_dir=args.data_dir,
                   device=args.settings.get("device", "auto"))


def cmd_figure(args: argparse.Namespace) -> None:
    from saliency_sanity.figures import make_figure

    inputs = {}
    for item in args.input:
        key, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--input expects KEY=PATH, got {item!r}")
        inputs[key] = Path(path)
    make_figure(args.name, args.model, inputs, args.out_dir, preset=args.preset, notes=args.notes)


def cmd_theory(args: argparse.Namespace) -> None:
    from saliency_sanity.theory import run_convsum, run_linear

    if args.analysis == "linear":
        paths = run_linear(args.settings, args.data_dir, args.out_dir)
    else:
        paths = run_convsum(args.settings, args.out_dir)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))


def cmd_index(args: argparse.Namespace) -> None:
    from saliency_sanity.figures import figure_records, write_index
    from saliency_sanity.provenance import write_manifest

    log.info("wrote %s", write_index(args.out_dir, args.left_out))
    if args.config_record is not None:
        log.info("wrote %s", write_manifest(figure_records(args.out_dir), args.out_dir, args.config_record))


def cmd_summary(args: argparse.Namespace) -> None:
    from saliency_sanity.summary import write_summary

    write_summary(args.config_record, args.checkpoint, args.similarity, args.out, args.out_jobs,
                  benchmarks_dir=args.benchmarks_dir, figures_index=args.figures_index)
    log.info("wrote %s and %s", args.out, args.out_jobs)


def cmd_verify(args: argparse.Namespace) -> None:
    from saliency_sanity.provenance import verify_manifest

    checked, problems = verify_manifest(args.manifest, args.root)
    for line in problems:
        print(line)
    if problems:
        raise SystemExit(f"{len(problems)} of {checked} files in {args.manifest} no longer match; rerun the steps "
                         "that write them (snakemake --cores all)")
    print(f"all {checked} files in {args.manifest} match")


def cmd_job_times(args: argparse.Namespace) -> None:
    from saliency_sanity.estimate import record_job_times

    log.info("wrote %s", record_job_times(args.run_dir, args.preset, args.threads or 2, args.out))


def cmd_compare(args: argparse.Namespace) -> None:
    from saliency_sanity.provenance import compare_results

    compared, problems = compare_results(args.run, args.reference)
    for line in problems:
        print(line)
    if not compared:
        raise SystemExit(f"{args.run} has no results/ CSV or .npz to compare; run the workflow there first")
    if problems:
        raise SystemExit(f"{len(problems)} of {compared} result files of {args.run} differ from {args.reference}")
    print(f"all {compared} result files of {args.run} equal {args.reference}'s (timing columns aside)")


def cmd_check_report(args: argparse.Namespace) -> None:
    from saliency_sanity.provenance import figures_missing_from_report

    listed, missing = figures_missing_from_report(args.report, args.figures_index)
    for name in missing:
        print(f"{name}: listed in {args.figures_index} but not embedded in {args.report}")
    if not listed:
        raise SystemExit(f"{args.figures_index} lists no figures; run the workflow first")
    if missing:
        raise SystemExit(f"{len(missing)} of {listed} figures are missing from {args.report}: rebuild it with "
                         "snakemake --report after the run")
    print(f"all {listed} figures of {args.figures_index} are in {args.report}")


def cmd_record_config(args: argparse.Namespace) -> None:
    import yaml

    from saliency_sanity.runtime import library_versions, write_text

    record = {"config": args.settings, "library_versions": library_versions()}
    write_text(args.out, yaml.safe_dump(record, sort_keys=False))


def cmd_methods(args: argparse.Namespace) -> None:
    from saliency_sanity.methods import METHODS

    for method in METHODS.values():
        flags = [f for f, on in (("model-free", method.model_free), ("stochastic", method.stochastic),
                                 ("baseline", method.needs_baseline)) if on]
        flags += [f"needs {r}" for r in sorted(method.requires)]
        print(f"{method.name:20s} {method.description}" + (f"  [{', '.join(flags)}]" if flags else ""))


def cmd_config(args: argparse.Namespace) -> None:
    import yaml

    from saliency_sanity.config import find_workflow_dir, resolve_config
    from saliency_sanity.names import check_names

    config = resolve_config(args.preset, workflow_dir=args.workflow_dir or find_workflow_dir())
    check_names(config)
    print(yaml.safe_dump(config, sort_keys=False), end="")


def build_parser() -> argparse.ArgumentParser:
    """The commands and their arguments; registered names are checked by each command (:func:`_one_of`)."""
    parser = argparse.ArgumentParser(prog="saliency-sanity", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    def add(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--threads", type=int, default=None, help="torch threads")
        return p

    p = add("download", cmd_download, "fetch a dataset (mirror or official host), md5-verified")
    p.add_argument("dataset", help="a registered dataset that is downloaded (mnist, fashion-mnist, ...)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--mirror", default=None, help="folder laid out as <dataset>/raw/<file> (default: $SALIENCY_DATA_MIRROR)")

    p = add("train", cmd_train, "train one model and write its checkpoint + JSON record")
    p.add_argument("--dataset", required=True, help="a registered dataset with a train split")
    p.add_argument("--arch", required=True, help="a registered architecture the project trains (cnn, mlp, ...)")
    p.add_argument("--labels", default="true", choices=["true", "random"])
    p.add_argument("--settings", type=_json_arg, required=True, help="the config's training section (JSON or @file)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)

    p = add("imagenet-model", cmd_imagenet_model,
            "fetch and verify an ImageNet model's published weights (or build untrained ones); write its checkpoint")
    p.add_argument("--arch", required=True, help="a registered architecture with published weights")
    p.add_argument("--settings", type=_json_arg, required=True,
                   help="the seed and the model's imagenet.models entry: {seed, weights, weights_sha256} (JSON or @file)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="downloaded weights go to <data-dir>/imagenet/weights/")
    p.add_argument("--mirror", default=None, help="folder holding imagenet/weights/<file> (default: $SALIENCY_DATA_MIRROR)")
    p.add_argument("--out", type=Path, required=True)

    p = add("randomize", cmd_randomize, "run one randomization test; write the tidy CSV and the maps")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--mode", required=True, help="a registered randomization mode (cascading, independent, labels, ...)")
    p.add_argument("--random-label-model", type=Path, default=None)
    p.add_argument("--settings", type=_json_arg, required=True, help="the resolved config (JSON or @file)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out-csv", type=Path, required=True)
    p.add_argument("--out-maps", type=Path, required=True)

    p = add("evaluate", cmd_evaluate, "run one registered evaluation of a model; write its tidy CSV and archive")
    p.add_argument("name", help="a registered evaluation (convergence, ablation, ...)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--settings", type=_json_arg, required=True,
                   help="the job's settings: seed, device, randomization, methods, images, evaluation (JSON or @file)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--out-csv", type=Path, required=True)
    p.add_argument("--out-maps", type=Path, default=None, help="the arrays it keeps (default: the CSV's path, .npz)")

    p = add("figure", cmd_figure, "render one registered figure for one model (PDF + PNG)")
    p.add_argument("name")
    p.add_argument("--model", required=True)
    p.add_argument("--input", action="append", default=[], metavar="KEY=PATH")
    p.add_argument("--out-dir", type=Path, default=Path("figures"))
    p.add_argument("--preset", default="default")
    p.add_argument("--notes", default="")

    p = add("theory", cmd_theory, "run a theory check (linear model on MNIST, 1-D conv-sum model); write tidy CSVs")
    p.add_argument("analysis", choices=["linear", "convsum"])
    p.add_argument("--settings", type=_json_arg, required=True,
                   help="the config's seed, theory and similarity sections (JSON or @file)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where mnist/raw/ is (linear only)")
    p.add_argument("--out-dir", type=Path, default=Path("results/theory"))

    p = add("index", cmd_index, "write figures/index.md from the figures' records")
    p.add_argument("--out-dir", type=Path, default=Path("figures"))
    p.add_argument("--left-out", action="append", default=[], metavar="LINE",
                   help="a model the run went without, and why (repeatable)")
    p.add_argument("--config-record", type=Path, default=None,
                   help="the run's results/config.yaml: also write <out-dir>/manifest.json (what made each figure)")

    p = add("summary", cmd_summary, "write the run's one-screen summary and every job's time")
    p.add_argument("--config-record", type=Path, required=True, help="the run's results/config.yaml")
    p.add_argument("--checkpoint", type=Path, action="append", default=[], help="a model checkpoint (repeatable)")
    p.add_argument("--similarity", type=Path, action="append", default=[],
                   help="a cascading randomization CSV, for the headline numbers (repeatable)")
    p.add_argument("--figures-index", type=Path, default=Path("figures/index.md"))
    p.add_argument("--benchmarks-dir", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--out", type=Path, default=Path("results/summary.md"))
    p.add_argument("--out-jobs", type=Path, default=Path("results/benchmarks/jobs.csv"))

    p = add("job-times", cmd_job_times, "record a finished run's job times in the table run estimates come from")
    p.add_argument("run_dir", type=Path, help="where the run happened (its .snakemake/metadata holds the times)")
    p.add_argument("--preset", required=True, help="the preset that run used")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("job_times.json"))

    p = add("compare", cmd_compare, "check that a run's result CSVs and maps equal another run's")
    p.add_argument("run", type=Path, help="a run directory (where Snakemake ran): its results/ is compared")
    p.add_argument("reference", type=Path, help="the run directory it must agree with")

    p = add("check-report", cmd_check_report, "check that a Snakemake report embeds every figure of the index")
    p.add_argument("report", type=Path, help="the report (snakemake --report report.html)")
    p.add_argument("--figures-index", type=Path, default=Path("figures/index.md"))

    p = add("verify", cmd_verify, "re-hash the files figures/manifest.json names; name any that no longer match")
    p.add_argument("--manifest", type=Path, default=Path("figures/manifest.json"))
    p.add_argument("--root", type=Path, default=Path("."), help="the run directory the manifest's paths start from")

    p = add("record-config", cmd_record_config, "write the resolved config and library versions of a run")
    p.add_argument("--settings", type=_json_arg, required=True, help="the resolved config (JSON or @file)")
    p.add_argument("--out", type=Path, required=True)

    add("methods", cmd_methods, "list the registered explanation methods")

    p = add("config", cmd_config, "print the resolved, validated config of a preset")
    p.add_argument("--preset", default="default")
    p.add_argument("--workflow-dir", type=Path, default=None,
                   help="the repository's workflow/ folder (default: ./workflow)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the project's own messages at INFO; other libraries' (fontTools logs every PDF font subset) at WARNING
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    _set_threads(args.threads)
    try:
        args.func(args)
    except _user_errors() as err:  # a problem with the input, not a bug: one clear line, no traceback
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
