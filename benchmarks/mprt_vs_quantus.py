"""Cascading randomization: this project's runner against its pass bound and Quantus' MPRT driving Captum.

All three sides measure the same work on the same trained model and images: explain the true
label of the first ``--n-images`` test images with the same methods (default: the gradient,
gradient x input, IG 50 steps, SmoothGrad 50 samples, guided backprop, Grad-CAM and Guided
Grad-CAM) at the original model and after re-initializing the blocks logits, fc, conv2, conv1
cumulatively (top down), and compare each map with the original one.

- **ours**: the runner's own loop (stage models, predictions, the harness's methods with their
  shared work, all four similarity metrics);
- **bound**: the input-gradient passes these methods need (``cascade.pass_counts``) times the
  best seconds per row of a plain batched gradient, measured in the same run over a sweep of
  batch sizes;
- **Quantus**: ``quantus.MPRT(layer_order="top_down")`` with an ``explain_func`` that calls Captum.

The randomized weights come from different random draws, so ours and Quantus' agree
statistically, not exactly: the report gives, per (method, stage), the mean Spearman similarity
of the absolute maps on both sides and their difference. The sides alternate within each
repeat (the CPU is shared) and the fastest run of each is reported, with the load average. See
benchmarks/README.md. Run ``python benchmarks/mprt_vs_quantus.py --help``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from captum.attr import (
    GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel,
    Saliency,
)
from torch import nn

from cascade import (
    CascadeRun, Rows, batch_sizes_arg, cascade_summary, counting_rows, format_cascade, gradient_row_seconds,
    run_cascade, timed,
)
from saliency_sanity.config import resolve_config
from saliency_sanity.contracts import ORIGINAL_STAGE as ORIGINAL
from saliency_sanity.data import MIRROR_ENV, fetch_dataset, load_split
from saliency_sanity.methods import get_method
from saliency_sanity.models import SanityModel, load_checkpoint, read_record
from saliency_sanity.randomization import Settings
from saliency_sanity.randomization.runner import similarity_table
from saliency_sanity.runtime import library_versions, resolve_device
from saliency_sanity.training import train_model

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = REPO_ROOT / "workflow"
METRIC = "spearman_abs"
DEFAULT_MODEL = REPO_ROOT / "results" / "models" / "mnist-cnn.pt"
DEFAULT_OUT = REPO_ROOT / "results" / "benchmarks" / "mprt_vs_quantus.json"
DEFAULT_MIRROR = REPO_ROOT.parent / "shared" / "data"
QUANTUS_INITS = ("model", "torch")
QUICK_STEPS = 200
QUICK_BATCH = 50
WARMUP_IMAGES = 2
BOUND_BATCH_SIZES = (64, 128, 256, 512, 1024)


# --------------------------------------------------------------------------- the Captum side


@dataclass(frozen=True)
class CaptumSettings:
    """Captum's parameters, set from the project config so both sides compute the same maps."""

    ig_steps: int
    smoothgrad_samples: int
    smoothgrad_stdev: float  # absolute: noise_level x (max - min) of the input range
    batch_size: int
    gradcam_layer: str | None = None  # the name, in the model Quantus is given, of the Grad-CAM layer


def _captum_gradient(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return Saliency(model).attribute(x, target=t, abs=False)


def _captum_gradient_x_input(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return InputXGradient(model).attribute(x, target=t)


def _captum_integrated_gradients(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=t, n_steps=s.ig_steps,
        method="riemann_right", internal_batch_size=s.batch_size,
    )


def _captum_smoothgrad(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=s.smoothgrad_samples, stdevs=s.smoothgrad_stdev,
        nt_samples_batch_size=max(1, s.batch_size // len(x)), target=t, abs=False,
    )


def _captum_guided_backprop(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return GuidedBackprop(model).attribute(x, target=t)


def _captum_gradcam(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    cam = LayerGradCam(model, getattr(model, s.gradcam_layer)).attribute(x, target=t, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear").expand_as(x)


def _captum_guided_gradcam(model: nn.Module, x: torch.Tensor, t: torch.Tensor, s: CaptumSettings) -> torch.Tensor:
    return GuidedGradCam(model, getattr(model, s.gradcam_layer)).attribute(x, target=t, interpolate_mode="bilinear")


# The project's method name -> the Captum call that computes the same map.
CAPTUM_METHODS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor, CaptumSettings], torch.Tensor]] = {
    "gradient": _captum_gradient,
    "gradient_x_input": _captum_gradient_x_input,
    "integrated_gradients": _captum_integrated_gradients,
    "smoothgrad": _captum_smoothgrad,
    "guided_backprop": _captum_guided_backprop,
    "gradcam": _captum_gradcam,
    "guided_gradcam": _captum_guided_gradcam,
}


def captum_explain(
    model: nn.Module, inputs: np.ndarray, targets: np.ndarray, *, method: str, settings: CaptumSettings, **_: Any
) -> np.ndarray:
    """Quantus' ``explain_func``: numpy in, numpy out, Captum in between, on the model's device.

    Quantus also passes ``device`` when given one; the model's own device is used instead.
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(inputs, dtype=torch.float32, device=device)
    t = torch.as_tensor(targets, dtype=torch.long, device=device)
    with warnings.catch_warnings():  # notices, on every call, that Captum sets hooks and requires_grad
        warnings.filterwarnings("ignore", message=r"Setting backward hooks", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require", category=UserWarning)
        maps = CAPTUM_METHODS[method](model, x, t, settings)
    return maps.detach().cpu().numpy()


class _ModelInit:
    """A layer's ``reset_parameters``: the project's initializer for its block.

    Quantus re-initializes a layer by seeding torch's global RNG and calling the layer's
    ``reset_parameters()``; this makes that call draw the model's own initializer (truncated
    normal sigma 0.1, bias 0.1 for the CNN) from that RNG. It holds the model whose block the
    layer is, so a deep copy of the layer (Quantus copies the model) re-initializes the copy.
    """

    def __init__(self, model: SanityModel, block: str):
        self.model, self.block = model, block

    def __call__(self) -> None:
        self.model.init_block(self.block, None)


def quantus_view(model: SanityModel, example: torch.Tensor, init: str = "model") -> nn.Sequential:
    """A copy of ``model`` as an ``nn.Sequential`` of its layers, the form Quantus should randomize.

    Quantus' MPRT re-initializes, top down, every module that has ``reset_parameters``; a
    SanityModel has one itself (the whole-model reset), which would add a fifth stage. As a
    Sequential of the same layers, the randomizable modules are exactly ``model.block_names``.
    ``init="model"`` gives each block the project's initializer (:class:`_ModelInit`);
    ``"torch"`` keeps PyTorch's default layer initializers (Quantus out of the box).
    """
    if init not in QUANTUS_INITS:
        raise ValueError(f"unknown Quantus initializer {init!r}; choose one of {QUANTUS_INITS}")
    twin = copy.deepcopy(model).eval()
    view = nn.Sequential(OrderedDict(twin.named_children())).eval()
    if init == "model":
        for block in twin.block_names:
            getattr(view, block).reset_parameters = _ModelInit(twin, block)
    randomized = [name for name, module in view.named_modules() if hasattr(module, "reset_parameters")][::-1]
    if randomized != list(model.block_names):
        raise ValueError(
            f"Quantus would randomize {randomized}, not the model's blocks {list(model.block_names)}; "
            "this benchmark needs a model whose blocks are its only parameterised layers"
        )
    with torch.no_grad():
        if not torch.allclose(view(example), model(example), atol=1e-5):
            raise ValueError(
                f"{type(model).__name__}'s forward is not the chain of its layers in order; "
                "Quantus cannot be given it as a Sequential"
            )
    return view


def run_quantus(
    view: nn.Sequential, images: torch.Tensor, labels: torch.Tensor, methods: Sequence[str],
    settings: CaptumSettings, *, seed: int,
) -> pd.DataFrame:
    """Quantus' cascading MPRT of each method on ``view`` (:func:`quantus_view`); a row per (method, stage, image)."""
    import quantus  # the optional extra "bench"

    x, y = images.cpu().numpy(), labels.cpu().numpy()
    torch.manual_seed(seed)  # Captum's NoiseTunnel draws from the global RNG
    rows = []
    for method in methods:
        metric = quantus.MPRT(
            similarity_func=quantus.similarity_func.correlation_spearman, layer_order="top_down", seed=seed,
            abs=True, normalise=True, disable_warnings=True, display_progressbar=False,
        )
        scores = metric(
            model=view, x_batch=x, y_batch=y, a_batch=None, channel_first=True, explain_func=captum_explain,
            explain_func_kwargs={"method": method, "settings": settings}, batch_size=len(x),
        )
        for stage, values in scores.items():
            rows += [(method, stage, image, float(v)) for image, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["method", "stage", "image", "value"])


# --------------------------------------------------------------------------- the project side


def project_config(methods: Sequence[str], n_images: int, seed: int, batch_size: int | None) -> dict:
    """The default preset, explaining the true label (as Quantus does), with only ``methods``.

    ``batch_size`` None keeps the preset's ``randomization.batch_size``.
    """
    randomization = {"n_images": n_images, "explain": "true_label"}
    if batch_size is not None:
        randomization["batch_size"] = batch_size
    config = resolve_config("default", {"seed": seed, "randomization": randomization}, workflow_dir=WORKFLOW_DIR)
    config["methods"] = {name: config["methods"].get(name) or {} for name in methods}
    return config


def run_project(
    model: SanityModel, images: torch.Tensor, labels: torch.Tensor, methods: Sequence[str], config: dict,
    device: torch.device,
) -> tuple[pd.DataFrame, CascadeRun]:
    """This project's cascading test through the runner's loop, timed and counted.

    Returns one row per (method, stage, image) of ``spearman_abs``, and the run (its seconds cover the
    stage models, predictions, methods and all four similarity metrics, as the workflow runs them).
    """
    settings = Settings.from_config(config)
    run = run_cascade(model, images, labels, settings, settings.normalization_for("mnist"), methods=methods,
                      device=device)
    table = similarity_table(run.result, np.arange(len(images)), {"dataset": "mnist", "model": "cnn", "mode": "cascading"})
    table = table[table.metric == METRIC]
    return table[["method", "stage", "image", "value"]].reset_index(drop=True), run


def captum_settings(config: dict, images: torch.Tensor, gradcam_layer: str | None = None) -> CaptumSettings:
    """Captum's parameters from the project's method settings; SmoothGrad's sigma made absolute."""
    methods = config["methods"]
    ig = methods.get("integrated_gradients") or {}
    sg = methods.get("smoothgrad") or {}
    span = float(images.max() - images.min())
    return CaptumSettings(
        ig_steps=int(ig.get("steps", 50)),
        smoothgrad_samples=int(sg.get("n_samples", 50)),
        smoothgrad_stdev=float(sg.get("noise_level", 0.15)) * span,
        batch_size=int(config["randomization"]["batch_size"]),
        gradcam_layer=gradcam_layer,
    )


def gradcam_layer_name(model: SanityModel) -> str | None:
    """The name of the model's Grad-CAM layer among its children (the layers Quantus' Sequential holds)."""
    if model.gradcam_layer is None:
        return None
    return next(name for name, child in model.named_children() if child is model.gradcam_layer)


# --------------------------------------------------------------------------- agreement


def cell_table(ours: pd.DataFrame, theirs: pd.DataFrame, methods: Sequence[str], stages: Sequence[str]) -> pd.DataFrame:
    """Per (method, stage): each side's mean, standard error and NaN count, and the difference."""

    def summary(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
        grouped = frame.groupby(["method", "stage"]).value
        return pd.DataFrame({
            f"{prefix}_mean": grouped.mean(),
            f"{prefix}_se": grouped.std(ddof=1) / np.sqrt(grouped.count()),
            f"{prefix}_nan": grouped.apply(lambda v: int(v.isna().sum())),
        })

    cells = summary(ours, "ours").join(summary(theirs, "quantus"), how="outer")
    order = pd.MultiIndex.from_product([list(methods), list(stages)], names=["method", "stage"])
    cells = cells.reindex(order).reset_index()
    cells.insert(2, "stage_index", cells.stage.map({s: i for i, s in enumerate(stages)}))
    cells["diff"] = cells.ours_mean - cells.quantus_mean
    se = np.sqrt(cells.ours_se**2 + cells.quantus_se**2)
    cells["z"] = (cells["diff"] / se).where(se > 1e-9)  # undefined where both sides are (near) exact
    return cells


def agreement(cells: pd.DataFrame) -> dict[str, float | int]:
    """How well the randomized stages' cell means agree (stage 0 is 1 on our side by definition)."""
    randomized = cells[cells.stage_index > 0].dropna(subset=["ours_mean", "quantus_mean"])
    ours, theirs = randomized.ours_mean, randomized.quantus_mean
    return {
        "cells": len(randomized),
        "pearson_r": float(ours.corr(theirs)) if len(randomized) > 1 else math.nan,
        "spearman_r": float(ours.corr(theirs, method="spearman")) if len(randomized) > 1 else math.nan,
        "mean_abs_diff": float((ours - theirs).abs().mean()),
        "max_abs_diff": float((ours - theirs).abs().max()),
        "cells_abs_z_over_2": int((randomized.z.abs() > 2).sum()),
    }


# --------------------------------------------------------------------------- inputs


def mirror_dir() -> Path | None:
    """SALIENCY_DATA_MIRROR, else ../shared/data beside the repository when it exists."""
    if os.environ.get(MIRROR_ENV):
        return Path(os.environ[MIRROR_ENV])
    return DEFAULT_MIRROR if DEFAULT_MIRROR.is_dir() else None


def train_quick(out_dir: Path, data_dir: Path, seed: int, device: str) -> Path:
    """A MNIST CNN after QUICK_STEPS Adam steps (one epoch over the first training images)."""
    settings = {
        "validation_size": 5000,
        "batch_size": QUICK_BATCH,
        "true_labels": {"train_size": QUICK_STEPS * QUICK_BATCH, "cnn": {"epochs": 1, "lr": 1e-3}},
    }
    path = out_dir / "mnist-cnn.pt"
    record = train_model("mnist", "cnn", "true", settings, data_dir, path, device=device, seed=seed)
    print(f"trained {path}: {QUICK_STEPS} steps, test accuracy {record['test_acc']:.3f}, "
          f"{record['wall_seconds']:.0f} s", flush=True)
    return path


def test_images(dataset: str, data_dir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images and their labels (the images the runner explains)."""
    fetch_dataset(dataset, data_dir, mirror_dir())
    images, labels = load_split(dataset, data_dir, "test")
    if n > len(images):
        raise ValueError(f"--n-images is {n} but the {dataset} test split has {len(images)} images")
    return images[:n], labels[:n]


# --------------------------------------------------------------------------- report


def format_report(cells: pd.DataFrame, summary: dict) -> str:
    """The readable table: per method and stage, both sides' mean similarity and the difference."""
    lines = [
        f"{'method':<22}{'stage':<10}{'ours':>16}{'quantus':>16}{'diff':>8}{'z':>7}",
        "-" * 79,
    ]
    for row in cells.itertuples():
        nan = f" ({row.quantus_nan} NaN)" if row.quantus_nan else ""
        z = "-" if math.isnan(row.z) else f"{row.z:+.1f}"
        lines.append(
            f"{row.method:<22}{row.stage:<10}{row.ours_mean:>8.3f} ±{row.ours_se:>6.3f}"
            f"{row.quantus_mean:>8.3f} ±{row.quantus_se:>6.3f}{row.diff:>+8.3f}{z:>7}{nan}"
        )
    agree, walls, work = summary["agreement"], summary["wall_seconds"], summary["forwards_per_image"]
    ratios = summary["ratios"]
    run = summary["settings"]
    lines += [
        "",
        f"agreement over {agree['cells']} randomized (method, stage) cells: Pearson r {agree['pearson_r']:.3f}, "
        f"Spearman r {agree['spearman_r']:.3f}, mean |diff| {agree['mean_abs_diff']:.3f}, "
        f"max |diff| {agree['max_abs_diff']:.3f}, |z| > 2 in {agree['cells_abs_z_over_2']} cells",
        f"wall time, fastest of {run['repeats']} ({run['n_images']} images, {run['threads']} threads, "
        f"{run['device']}, batch {run['batch_size']}): bound {walls['bound']:.2f} s, ours {walls['ours']:.2f} s, "
        f"quantus {walls['quantus']:.2f} s; ours / bound {ratios['ours_over_bound']:.2f}, "
        f"quantus / ours {ratios['quantus_over_ours']:.2f}; 1-min load average "
        f"{run['load_average_1min']['before']:.1f} before, {run['load_average_1min']['after']:.1f} after",
        f"images through the network per explained image: ours {work['ours']['grad_rows']:g} with backward "
        f"+ {work['ours']['nograd_rows']:g} forward only; quantus {work['quantus']['grad_rows']:g} with backward "
        f"+ {work['quantus']['nograd_rows']:g} forward only",
        "",
        *format_cascade(summary["cascading"]),
    ]
    return "\n".join(lines)


def write_outputs(out: Path, summary: dict, cells: pd.DataFrame, per_image: pd.DataFrame) -> None:
    """``out`` (JSON: settings, times, work, agreement, cells) and ``out``.csv (per-image values)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {**summary, "cells": json.loads(cells.to_json(orient="records"))}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    per_image.to_csv(out.with_suffix(".csv"), index=False)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cascading randomization test of the MNIST CNN: this project's runner vs Quantus' MPRT "
                    "driving Captum on the same model, images, methods and stages. Prints both wall times and "
                    "how well the Spearman (absolute maps) similarities agree.",
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="checkpoint (.pt with its .json record) (default: %(default)s)")
    parser.add_argument("--train-quick", action="store_true",
                        help=f"train a MNIST CNN for {QUICK_STEPS} steps into a temporary folder and use it")
    parser.add_argument("--n-images", type=int, default=100, help="first N test images (default: %(default)s)")
    parser.add_argument("--methods", default=",".join(CAPTUM_METHODS),
                        help="comma-separated methods, from: %(default)s")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="randomization seed of both sides (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="rows per forward/backward pass on both sides (default: the default preset's "
                             "randomization.batch_size)")
    parser.add_argument("--bound-batch-sizes", type=batch_sizes_arg, default=BOUND_BATCH_SIZES,
                        help="batch sizes the gradient bound sweeps; its best seconds per row is the bound's "
                             "(default: %s)" % ",".join(map(str, BOUND_BATCH_SIZES)))
    parser.add_argument("--bound-rows", type=int, default=2048,
                        help="rows timed per batch size of the bound's sweep (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per side, alternating; the fastest is reported (default: %(default)s)")
    parser.add_argument("--quantus-init", choices=QUANTUS_INITS, default="model",
                        help="Quantus re-initializes layers with the model's own initializer (model) or "
                             "PyTorch's default layer initializers (torch) (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data",
                        help="where the dataset is fetched (from the mirror or the web) (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="JSON of the numbers; per-image values go to the same name with .csv "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(CAPTUM_METHODS))
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(CAPTUM_METHODS)}")
    if args.n_images < 2:
        parser.error("--n-images must be at least 2 (a standard error needs two images)")
    if min(args.threads, args.batch_size or 1, args.repeats, args.bound_rows) < 1:
        parser.error("--threads, --batch-size, --repeats and --bound-rows must be positive")
    return args


def benchmark(args: argparse.Namespace, model_path: Path) -> dict:
    """Warm up, then time the three sides alternately: the gradient bound, ours and Quantus + Captum.

    Returns the summary with the cells and per-image values.
    """
    record = read_record(model_path)
    device = resolve_device(args.device)
    model = load_checkpoint(model_path, device)
    stages = [ORIGINAL, *model.block_names]
    images, labels = test_images(record["dataset"], args.data_dir, args.n_images)
    images, labels = images.to(device), labels.to(device)
    view = quantus_view(model, images[:1], args.quantus_init)
    config = project_config(args.methods, args.n_images, args.seed, args.batch_size)
    settings = captum_settings(config, images, gradcam_layer_name(model))
    shape = tuple(images.shape[1:])

    def sides(n: int) -> dict[str, Callable[[], Any]]:
        config_n = project_config(args.methods, n, args.seed, args.batch_size)
        return {
            "ours": lambda: run_project(model, images[:n], labels[:n], args.methods, config_n, device),
            "quantus": lambda: run_quantus(view, images[:n], labels[:n], args.methods, settings, seed=args.seed),
        }

    work: dict[str, Rows] = {}
    for side, run in sides(WARMUP_IMAGES).items():  # warm-up, also counting the work per image
        with counting_rows(shape) as work[side]:
            run()
    tables: dict[str, pd.DataFrame] = {}
    runs: list[CascadeRun] = []
    times: dict[str, list[float]] = {"bound": [], "ours": [], "quantus": []}
    row_seconds: list[dict[int, float]] = []
    load_before = os.getloadavg()[0]  # the CPU is shared: record how busy it was
    for repeat in range(args.repeats):  # the sides alternate, so all see the same load on a shared CPU
        print(f"timing the gradient bound ({repeat + 1}/{args.repeats}) ...", flush=True)
        row_seconds.append(gradient_row_seconds(model, images, labels, args.bound_batch_sizes, device,
                                                rows=args.bound_rows))
        print(f"timing ours ({repeat + 1}/{args.repeats}) ...", flush=True)
        tables["ours"], run = sides(args.n_images)["ours"]()
        runs.append(run)
        times["ours"].append(run.seconds)
        print(f"timing quantus ({repeat + 1}/{args.repeats}) ...", flush=True)
        tables["quantus"], seconds = timed(sides(args.n_images)["quantus"], device)
        times["quantus"].append(seconds)
    gradient_row, bound_batch = min((seconds, b) for sweep in row_seconds for b, seconds in sweep.items())
    cascade = cascade_summary(runs, [get_method(name) for name in args.methods], Settings.from_config(config),
                              gradient_row)
    times["bound"] = [cascade["bound_seconds"] * min(sweep.values()) / gradient_row for sweep in row_seconds]
    walls = {side: min(values) for side, values in times.items()}
    cells = cell_table(tables["ours"], tables["quantus"], args.methods, stages)
    per_image = pd.concat([tables[side].assign(side=side) for side in ("ours", "quantus")])
    summary = {
        "settings": {
            "model": str(model_path), "dataset": record["dataset"], "arch": record["arch"],
            "test_acc": record.get("test_acc"), "n_images": args.n_images, "methods": args.methods,
            "stages": stages, "explained": "true label", "metric": f"{METRIC} (Quantus: correlation_spearman, abs)",
            "seed": args.seed, "threads": args.threads, "device": str(device), "batch_size": settings.batch_size,
            "quantus_init": args.quantus_init, "repeats": args.repeats, "captum": asdict(settings),
            "bound_batch_sizes": list(args.bound_batch_sizes), "bound_rows": args.bound_rows,
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            "versions": {**library_versions(), "quantus": _quantus_version()},
        },
        "wall_seconds": walls,
        "wall_seconds_all": times,
        "ratios": {"ours_over_bound": walls["ours"] / walls["bound"],
                   "quantus_over_ours": walls["quantus"] / walls["ours"],
                   "quantus_over_bound": walls["quantus"] / walls["bound"]},
        "gradient_seconds_per_row": {"best": gradient_row, "batch_size": bound_batch,
                                     "by_batch_size": {str(b): [sweep[b] for sweep in row_seconds]
                                                       for b in args.bound_batch_sizes}},
        "forwards_per_image": {side: {"grad_rows": rows.grad_total / WARMUP_IMAGES,
                                      "nograd_rows": rows.forward_only / WARMUP_IMAGES}
                               for side, rows in work.items()},
        "cascading": cascade,
        "agreement": agreement(cells),
    }
    return {"summary": summary, "cells": cells, "per_image": per_image[["side", "method", "stage", "image", "value"]]}


def _quantus_version() -> str:
    import quantus

    return quantus.__version__


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import quantus  # noqa: F401
    except ImportError:
        print("quantus is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        if args.train_quick:
            fetch_dataset("mnist", args.data_dir, mirror_dir())
            model_path = train_quick(Path(scratch), args.data_dir, args.seed, args.device)
        elif args.model.is_file():
            model_path = args.model
        else:
            print(f"no model at {args.model}: pass --model PATH, or --train-quick to train one "
                  f"({QUICK_STEPS} steps)", file=sys.stderr)
            return 2
        result = benchmark(args, model_path)
    print(format_report(result["cells"], result["summary"]))
    write_outputs(args.out, result["summary"], result["cells"], result["per_image"])
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
