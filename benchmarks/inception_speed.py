"""Inception v3 speed: our Integrated Gradients against Captum's, and the whole cascading test,
each against the machine's own input-gradient throughput.

1. Integrated Gradients, ``--steps`` (50) right-Riemann steps from the zero baseline (in the
   model's input space), per image: ``saliency_sanity.methods.gradients.integrated_gradients``
   and Captum's ``IntegratedGradients(method="riemann_right")``, each over a sweep of batch sizes
   (rows per forward/backward pass), the fastest reported. The bound is ``steps`` x the time of
   one plain batched forward + backward of the target logit w.r.t. the input, per row, at its
   best batch size. Both sides' maps are compared, so the two do the same work.
2. The cascading randomization test of ``--cascade-images`` image(s) through the runner's own
   loop (``randomization.run_stages`` with the settings' ``Harness`` and the ``cascading`` mode)
   with the default preset's ImageNet method parameters: every registered
   method that applies, original + 17 blocks. The bound is the input-gradient passes these
   methods need per image and stage (counted from their parameters, shared passes once) x the
   per-row gradient time x stages.

The model is ``build_inception("random")``: untrained weights, the same arithmetic as the
pretrained ones. See benchmarks/README.md. Run ``python benchmarks/inception_speed.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import warnings
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from captum.attr import IntegratedGradients
from torch import nn

from cascade import batch_sizes_arg, cascade_summary, format_cascade, gradient_pass, run_cascade, timed
from saliency_sanity.config import randomize_settings, resolve_config
from saliency_sanity.data.images import load_images
from saliency_sanity.methods.gradients import integrated_gradients
from saliency_sanity.models.inception import build_inception
from saliency_sanity.randomization import Settings
from saliency_sanity.runtime import library_versions, resolve_device

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = REPO_ROOT / "workflow"
DEFAULT_OUT = REPO_ROOT / "results" / "benchmarks" / "inception_speed.json"
DEFAULT_BATCH_SIZES = (5, 10, 25, 50)
ALL_STAGES = 18  # original + the 17 blocks
CAPTUM_RULE = {"right": "riemann_right", "midpoint": "riemann_middle"}
# --quick: a run of seconds that checks the script end to end (the test uses it)
QUICK = {"size": 75, "images": 1, "steps": 4, "repeats": 1, "batch_sizes": (2, 4), "stages": 2}
QUICK_CAPPED = ("steps", "n_samples", "iterations")
QUICK_CAP = 2  # --quick caps every method's steps, n_samples and iterations at this


# --------------------------------------------------------------------------- measuring


def captum_ig(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int, rule: str,
              batch_size: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "Input Tensor 0 did not already require gradients"
        warnings.simplefilter("ignore", UserWarning)
        return IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=steps, method=CAPTUM_RULE[rule],
            internal_batch_size=batch_size,
        )


def captum_rows_per_pass(n_images: int, batch_size: int) -> int:
    """Captum batches whole steps: max(1, B // N) steps of all N images per pass."""
    return n_images * max(1, batch_size // n_images)


def benchmark_ig(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, steps: int, rule: str,
                 batch_sizes: Sequence[int], repeats: int, device: torch.device) -> dict:
    """Seconds per image of ours, Captum's and the bound, over the batch-size sweep."""
    n = len(images)
    alphas = torch.arange(1, steps + 1, device=device, dtype=images.dtype) / steps
    path = {}  # the bound's rows: points of the images' paths, built before timing
    bound_sizes = sorted({1, *batch_sizes})  # batch 1: the latency of a lone gradient, for reference
    for b in bound_sizes:
        rows = torch.arange(b, device=device)
        path[b] = (images[rows % n] * alphas[(rows // n) % steps].view(-1, 1, 1, 1), targets[rows % n])
        gradient_pass(model, *path[b])  # warm-up: the allocator meets every batch shape once
    sides = {
        "bound": lambda b: gradient_pass(model, *path[b]),
        "ours": lambda b: integrated_gradients(model, images, targets, steps=steps, rule=rule, batch_size=b),
        "captum": lambda b: captum_ig(model, images, targets, steps, rule, b),
    }
    times: dict[str, dict[int, list[float]]] = {
        side: {b: [] for b in (bound_sizes if side == "bound" else batch_sizes)} for side in sides}
    maps: dict[tuple[str, int], torch.Tensor] = {}
    for repeat in range(repeats):  # the sides alternate, so all see the same load on a shared CPU
        for b in bound_sizes:
            print(f"IG: batch {b} ({repeat + 1}/{repeats}) ...", flush=True)
            for side, run in sides.items():
                if b not in times[side]:
                    continue
                out, seconds = timed(partial(run, b), device)
                times[side][b].append(seconds)
                if side != "bound":
                    maps[side, b] = out.detach()
    gradient_row, bound_batch = min(((min(t) / b, b) for b, t in times["bound"].items()), key=lambda pair: pair[0])
    result: dict[str, Any] = {"steps": steps, "rule": rule, "captum_method": CAPTUM_RULE[rule],
                              "baseline": "zeros (input space)", "images": n}
    for side in ("ours", "captum"):
        per_image, batch = min(((min(t) / n, b) for b, t in times[side].items()), key=lambda pair: pair[0])
        result[side] = {
            "seconds_per_image": per_image, "batch_size": batch,
            "seconds_per_image_by_batch_size": {str(b): [s / n for s in t] for b, t in times[side].items()},
        }
    result["captum"]["rows_per_pass"] = {str(b): captum_rows_per_pass(n, b) for b in batch_sizes}
    result["bound"] = {
        "seconds_per_image": steps * gradient_row, "gradient_seconds_per_row": gradient_row,
        "batch_size": bound_batch,
        "gradient_seconds_per_row_by_batch_size": {str(b): [s / b for s in t] for b, t in times["bound"].items()},
        "gradient_seconds_batch_1": min(times["bound"][1]),
    }

    def difference(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max())

    # equal work: the same maps, up to float32 rounding, which depends on how rows are batched
    result["max_abs_diff_over_max_abs"] = max(difference(maps["ours", b], maps["captum", b]) for b in batch_sizes)
    result["ours_across_batch_sizes"] = max(difference(maps["ours", b], maps["ours", batch_sizes[0]])
                                            for b in batch_sizes)
    result["ratios"] = {
        "ours_over_captum": result["ours"]["seconds_per_image"] / result["captum"]["seconds_per_image"],
        "ours_over_bound": result["ours"]["seconds_per_image"] / result["bound"]["seconds_per_image"],
        "captum_over_bound": result["captum"]["seconds_per_image"] / result["bound"]["seconds_per_image"],
    }
    return result


# --------------------------------------------------------------------------- the cascading test


def cascade_config(seed: int, n_images: int, batch_size: int | None, quick: bool) -> dict:
    """The ImageNet run's settings from the default preset, as the workflow passes them
    (:func:`saliency_sanity.config.randomize_settings`), for ``n_images`` images."""
    config = randomize_settings(resolve_config("default", workflow_dir=WORKFLOW_DIR), "imagenet")
    config["seed"] = seed
    config["randomization"]["n_images"] = n_images
    if batch_size:
        config["randomization"]["batch_size"] = batch_size
    if quick:
        config["methods"] = {name: {key: min(value, QUICK_CAP) if key in QUICK_CAPPED else value
                                    for key, value in params.items()} for name, params in config["methods"].items()}
    return config


def benchmark_cascade(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: Settings,
                      *, stages: int, repeats: int, gradient_row: float, device: torch.device) -> dict:
    """Wall seconds of the runner's cascading test, its rows through the network, and the bound."""
    methods = settings.harness().applicable(model)
    runs = []
    for repeat in range(repeats):
        print(f"cascading test: {stages} stages x {len(methods)} methods ({repeat + 1}/{repeats}) ...", flush=True)
        run = run_cascade(model, images, labels, settings, settings.normalization_for("imagenet"), stages=stages,
                          device=device)
        if len(run.result.stages) != stages:
            raise RuntimeError(f"the runner explained {len(run.result.stages)} stages, expected {stages}")
        runs.append(run)
    return cascade_summary(runs, methods, settings, gradient_row)


# --------------------------------------------------------------------------- inputs and report


def load_inputs(n: int, size: int, device: torch.device) -> torch.Tensor:
    """The first ``n`` of scikit-image's photos (chelsea, coffee, ...), ImageNet-normalized."""
    return load_images("skimage", size=size, n_images=n).images.to(device)


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def format_report(summary: dict) -> str:
    run, ig = summary["settings"], summary["integrated_gradients"]
    bound = ig["bound"]
    lines = [
        f"Inception v3 at {run['size']} px, {run['device']}, {run['threads']} threads; images: {run['images_source']}",
        "",
        f"Integrated Gradients, {ig['steps']} steps ({ig['rule']} rule), {ig['images']} image(s): seconds per image",
        f"  ours    {ig['ours']['seconds_per_image']:8.3f}   (batch {ig['ours']['batch_size']})",
        f"  captum  {ig['captum']['seconds_per_image']:8.3f}   (internal_batch_size {ig['captum']['batch_size']})",
        f"  bound   {bound['seconds_per_image']:8.3f}   ({ig['steps']} x {bound['gradient_seconds_per_row']:.4f} s "
        f"per gradient row, batch {bound['batch_size']}; a lone row: {bound['gradient_seconds_batch_1']:.4f} s)",
        f"  ours / captum {ig['ratios']['ours_over_captum']:.2f}, ours / bound {ig['ratios']['ours_over_bound']:.2f}, "
        f"captum / bound {ig['ratios']['captum_over_bound']:.2f}; max |ours - captum| / max |captum| "
        f"{ig['max_abs_diff_over_max_abs']:.1e} (ours across batch sizes {ig['ours_across_batch_sizes']:.1e})",
    ]
    cascade = summary.get("cascading")
    if cascade:
        lines += ["", *format_cascade(cascade)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Inception v3 speed: our Integrated Gradients vs Captum's, and the runner's whole cascading "
                    "test, each against the machine's measured input-gradient throughput.",
    )
    parser.add_argument("--images", type=int, default=1, help="images explained by IG (default: %(default)s)")
    parser.add_argument("--size", type=int, default=299, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50, help="IG steps (default: %(default)s)")
    parser.add_argument("--rule", choices=sorted(CAPTUM_RULE), default="right",
                        help="Riemann rule of both IGs (default: %(default)s, the method's default)")
    parser.add_argument("--batch-sizes", type=batch_sizes_arg, default=DEFAULT_BATCH_SIZES,
                        help="comma-separated rows per pass swept on every side (default: 5,10,25,50)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed runs per side and batch size (IG) and of the cascading test; the fastest is "
                             "reported (default: %(default)s)")
    parser.add_argument("--cascade-images", type=int, default=1,
                        help="images of the cascading test (default: %(default)s)")
    parser.add_argument("--stages", type=int, default=ALL_STAGES,
                        help="stages of the cascading test, from the original down (default: all %(default)s)")
    parser.add_argument("--cascade-batch-size", type=int, default=None,
                        help="the runner's batch size (default: the config's imagenet.batch_size)")
    parser.add_argument("--no-cascade", action="store_true", help="skip the cascading test")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--no-tf32", action="store_true",
                        help="CUDA: full float32 convolutions and matrix products (PyTorch lets cuDNN use TF32 by "
                             "default)")
    parser.add_argument("--seed", type=int, default=0, help="weights and randomization seed (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"seconds-long check of the whole script: {QUICK['size']} px, {QUICK['images']} "
                             f"image, {QUICK['steps']} IG steps, batch sizes {QUICK['batch_sizes']}, "
                             f"{QUICK['stages']} stages, every method's steps, n_samples and iterations capped at {QUICK_CAP}, "
                             "1 repeat")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON of the numbers (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.steps, args.repeats = (QUICK[k] for k in ("size", "images", "steps", "repeats"))
        args.batch_sizes, args.stages, args.cascade_images = QUICK["batch_sizes"], QUICK["stages"], 1
    if min(args.images, args.steps, args.repeats, args.cascade_images, args.threads) < 1:
        parser.error("--images, --steps, --repeats, --cascade-images and --threads must be positive")
    if not 1 <= args.stages <= ALL_STAGES:
        parser.error(f"--stages must be between 1 and {ALL_STAGES}")
    if args.size < 75:
        parser.error("--size must be at least 75 (Inception v3's smallest input)")
    return args


def benchmark(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model, source = build_inception("random", seed=args.seed)
    model = model.to(device).eval()
    n = max(args.images, args.cascade_images)
    images = load_inputs(n, args.size, device)
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    load_before = os.getloadavg()[0]  # the CPU is shared: record how busy it was
    ig = benchmark_ig(model, images[: args.images], predicted[: args.images], steps=args.steps, rule=args.rule,
                      batch_sizes=args.batch_sizes, repeats=args.repeats, device=device)
    summary: dict[str, Any] = {
        "settings": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "size": args.size,
            "images_source": "skimage", "model": "inception_v3", "weights": source, "explained": "predicted class",
            "batch_sizes": list(args.batch_sizes), "repeats": args.repeats, "threads": torch.get_num_threads(),
            "device": str(device), "seed": args.seed, "quick": args.quick, "machine": machine(),
            "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
            "versions": library_versions(),
        },
        "integrated_gradients": ig,
    }
    if not args.no_cascade:
        config = cascade_config(args.seed, args.cascade_images, args.cascade_batch_size, args.quick)
        settings = Settings.from_config(config)
        labels = predicted[: args.cascade_images]  # only read when the config explains the true label
        summary["cascading"] = benchmark_cascade(
            model, images[: args.cascade_images], labels, settings, stages=args.stages, repeats=args.repeats,
            gradient_row=ig["bound"]["gradient_seconds_per_row"], device=device,
        )
    summary["settings"]["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        summary = benchmark(args)
    finally:  # main() also runs inside the test process
        torch.set_num_threads(threads)
    print(format_report(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
