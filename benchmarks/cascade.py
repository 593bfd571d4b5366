"""The cascading test against its pass bound: what both benchmark scripts measure the same way.

- :func:`gradient_pass` is the unit of work: one plain forward and backward of the target logit
  w.r.t. the input. :func:`gradient_row_seconds` times it over a sweep of batch sizes; the best
  seconds per row is the machine's input-gradient throughput.
- :func:`pass_counts` reads, from the methods' parameters, how many such passes per image and
  stage the methods need (work one method shares with another counted once) and how many each
  would take alone.
- :func:`run_cascade` runs the runner's own loop (``randomization.run_stages`` with the harness
  and the ``cascading`` mode) while :func:`counting_rows` counts the rows that really enter the
  network, per method.
- :func:`cascade_summary` puts the runs, the counts and the bound (needed passes x seconds per
  row x images x stages) together.

Run as scripts, the benchmarks find this module beside them (``benchmarks/`` is the script's
folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from saliency_sanity.data import Examples
from saliency_sanity.harness import Harness
from saliency_sanity.methods.perturbation import occlusion_masks
from saliency_sanity.methods.registry import Method
from saliency_sanity.randomization import ModeInputs, RunResult, Settings, mode_spec, run_stages


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall seconds (the device synchronized at both ends)."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def gradient_pass(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The unit of work: one forward and backward of the target logit w.r.t. the input, plain autograd."""
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        selected = model(inputs).gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, inputs)
    return grad


def gradient_row_seconds(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                         batch_sizes: Sequence[int], device: torch.device, rows: int) -> dict[int, float]:
    """Seconds per row of :func:`gradient_pass` at each batch size, over at least ``rows`` rows each.

    The rows cycle through ``images`` (so they are real inputs); each size is warmed up once first.
    """
    seconds = {}
    for b in batch_sizes:
        index = torch.arange(b, device=device) % len(images)
        x, t = images[index], targets[index]
        gradient_pass(model, x, t)  # warm-up: the allocator meets the batch shape once
        passes = max(1, -(-rows // b))
        _, wall = timed(lambda: [gradient_pass(model, x, t) for _ in range(passes)], device)
        seconds[b] = wall / (passes * b)
    return seconds


def batch_sizes_arg(text: str) -> tuple[int, ...]:
    """An argparse type: positive comma-separated integers (batch sizes to sweep)."""
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"positive comma-separated integers expected, got {text!r}")
    return sizes


def method_param(method: Method, params: dict, key: str) -> int:
    """A method's parameter: the config's value, else the function's default."""
    if key in params:
        return int(params[key])
    return int(inspect.signature(method.fn).parameters[key].default)


def pass_counts(methods: Sequence[Method], settings: Settings,
                image_shape: Sequence[int] = (3, 299, 299)) -> dict[str, dict[str, Any]]:
    """Input-gradient passes per image and stage: as each method computes alone, and really needed; and
    the forward-only rows a method sends through the network (occlusion, CAM), which the bound leaves out.

    ``image_shape`` (C, H, W) sets occlusion's window positions.
    """
    names = {m.name for m in methods}
    counts: dict[str, dict[str, Any]] = {}
    noisy: dict[tuple, str] = {}  # (n_samples, noise_level) -> the method whose noisy passes the others share
    for method in methods:
        params = settings.method_params.get(method.name, {})
        name = method.name
        forward = 0
        if method.model_free:
            alone, needed, why = 0, 0, "model-free control"
        elif name == "integrated_gradients":
            alone = needed = method_param(method, params, "steps")
            why = "steps"
        elif name in ("smoothgrad", "smoothgrad_squared", "vargrad"):
            alone = method_param(method, params, "n_samples")
            key = (alone, float(params.get("noise_level", 0.15)))
            shared = noisy.setdefault(key, name)
            needed = alone if shared == name else 0
            why = "n_samples" if shared == name else f"n_samples, shared with {shared}"
        elif name == "ig_smoothgrad":
            alone = needed = method_param(method, params, "n_samples") * method_param(method, params, "steps")
            why = "n_samples x steps"
        elif name == "gradient_x_input":
            alone, needed = 1, 0 if "gradient" in names else 1
            why = "the gradient's map x the input" if needed == 0 else "1"
        elif name == "guided_gradcam":
            alone, needed = 2, 0 if {"guided_backprop", "gradcam"} <= names else 2
            why = "guided backprop + Grad-CAM" + (", both reused" if needed == 0 else "")
        elif name == "deeplift_rescale":
            alone, needed = 2, 1
            why = "input + baseline rows in one batch; needed: the input's (zero baseline: its forward is shared)"
        elif name == "deeplift_revealcancel":
            alone, needed, forward = 4, 2, 2
            why = ("input + baseline rows, each linear layer replayed on them with its positive weights; needed: "
                   "the input's pass and its replay (zero baseline: its forward is shared); forward only: the "
                   "positive part's differences, the layer on dx+ and dx-")
        elif name in ("gradcam", "gradcam_plus_plus"):
            alone = needed = 1
            why = "1 (its backward stops at the Grad-CAM layer; counted as a full pass)"
        elif name == "cam":
            alone, needed, forward = 0, 0, 1
            why = "no gradient: one forward to the CAM layer"
        elif name == "occlusion":
            window, stride = method_param(method, params, "window"), method_param(method, params, "stride")
            positions = len(occlusion_masks(torch.Size(image_shape[1:]), window, stride, torch.device("cpu")))
            alone, needed, forward = 0, 0, positions + 1
            why = f"no gradient: {positions} occluded copies + the original, forward only"
        elif name == "meaningful_perturbation":
            alone = needed = method_param(method, params, "iterations")
            why = "iterations (each a forward and backward of the perturbed image)"
        else:  # gradient, guided_backprop, deconvnet, and any method added later
            keys = [k for k in ("n_samples", "steps") if k in method.accepts()]
            alone = needed = max(1, int(torch.tensor([method_param(method, params, k) for k in keys]).prod())) if keys else 1
            why = " x ".join(keys) or "1"
        counts[name] = {"alone": alone, "needed": needed, "forward": forward, "count": why}
    return counts


@dataclass
class Rows:
    """Rows (images) entering the model's first layer, per method: with autograd, and forward only."""

    image_shape: tuple[int, ...]
    harness: Harness | None = None  # its ``current`` method is the one the rows are counted for
    grad: dict[str, int] = field(default_factory=dict)
    forward: dict[str, int] = field(default_factory=dict)

    @property
    def current(self) -> str:
        return (self.harness.current if self.harness is not None else None) or "prediction"

    @property
    def grad_total(self) -> int:
        return sum(self.grad.values())

    @property
    def forward_only(self) -> int:
        return sum(self.forward.values())


@contextmanager
def counting_rows(image_shape: tuple[int, ...], harness: Harness | None = None) -> Iterator[Rows]:
    """A global forward hook counting rows into a leaf module that takes image-shaped input.

    Global, so it sees every copy of the model that any side makes.
    """
    rows = Rows(image_shape, harness)

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        if next(module.children(), None) is None and args and isinstance(args[0], torch.Tensor):
            if tuple(args[0].shape[1:]) == rows.image_shape:
                counted = rows.grad if torch.is_grad_enabled() else rows.forward
                counted[rows.current] = counted.get(rows.current, 0) + args[0].shape[0]

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield rows
    finally:
        handle.remove()


@dataclass
class CascadeRun:
    """One run of the runner's cascading test: its result, wall seconds, rows and the parts' seconds."""

    result: RunResult
    seconds: float
    rows: Rows
    method_seconds: dict[str, float]  # the harness's own, per method
    parts: dict[str, float]  # the runner's other parts (stage models, predictions, similarity)


def run_cascade(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: Settings,
                normalization: str, *, stages: int | None = None, methods: Sequence[str] | None = None,
                device: torch.device) -> CascadeRun:
    """The runner's cascading test of ``images`` (its first ``stages`` stages; None: all), timed and counted.

    Everything the runner does per stage is timed: the stage models, the predictions, the methods
    (with their shared work) and the similarity metrics; loading and writing files are not.
    """
    if hasattr(model, "reset_bn_statistics"):  # as run_randomization_test does
        model.reset_bn_statistics = settings.batchnorm == "reset"
    harness = Harness(settings.method_params, methods=methods, seed=settings.seed, batch_size=settings.batch_size)
    applicable = harness.applicable(model)
    with counting_rows(tuple(images.shape[1:]), harness) as rows:
        def run() -> RunResult:
            stage_iter = mode_spec("cascading").stages(model, ModeInputs(seed=settings.seed))
            return run_stages(itertools.islice(stage_iter, stages), harness, applicable, Examples(images, labels),
                              settings, normalization)

        result, seconds = timed(run, device)
    return CascadeRun(result, seconds, rows, dict(harness.seconds), dict(result.seconds))


def cascade_summary(runs: Sequence[CascadeRun], methods: Sequence[Method], settings: Settings,
                    gradient_row: float) -> dict[str, Any]:
    """The fastest run against the bound: per method (needed passes, rows, seconds) and in all."""
    best = min(runs, key=lambda run: run.seconds)
    n, stages = len(best.result.targets[0]), len(best.result.stages)
    counts = pass_counts(methods, settings, best.rows.image_shape)
    needed = sum(c["needed"] for c in counts.values())
    bound = needed * gradient_row * n * stages
    per_method = {
        name: {
            **count,
            "measured_rows": best.rows.grad.get(name, 0) / (n * stages),
            "measured_forward_rows": best.rows.forward.get(name, 0) / (n * stages),
            "seconds": best.method_seconds.get(name),
            "bound_seconds": count["needed"] * gradient_row * n * stages,
        }
        for name, count in counts.items()
    }
    methods_total = sum(best.method_seconds.values())
    return {
        "images": n,
        "stages": stages,
        "stage_names": list(best.result.stages),
        "methods": [m.name for m in methods],
        "method_params": {m.name: settings.method_params.get(m.name, {}) for m in methods},
        "batch_size": settings.batch_size,
        "explain": settings.explain,
        "passes_per_image_per_stage": {
            "needed": needed,
            "alone": sum(c["alone"] for c in counts.values()),
            "methods_forward_only": sum(c["forward"] for c in counts.values()),
            "measured_rows_with_grad": best.rows.grad_total / (n * stages),
            "measured_rows_forward_only": best.rows.forward_only / (n * stages),
        },
        "per_method": per_method,
        "seconds": best.seconds,
        "seconds_all": [run.seconds for run in runs],
        "seconds_parts": {"methods": methods_total, **best.parts,
                          "rest": best.seconds - methods_total - sum(best.parts.values())},
        "gradient_seconds_per_row": gradient_row,
        "bound_seconds": bound,
        "ratio": best.seconds / bound if bound else None,
    }


def format_cascade(cascade: dict[str, Any]) -> list[str]:
    """The readable lines of :func:`cascade_summary`: per method against its share of the bound, then in all."""
    passes = cascade["passes_per_image_per_stage"]
    lines = [
        f"Cascading test, {cascade['images']} image(s), {cascade['stages']} stages, "
        f"{len(cascade['methods'])} methods, batch {cascade['batch_size']}:",
        f"  {'method':<24}{'needed':>8}{'alone':>7}{'rows':>7}{'seconds':>10}{'bound':>9}{'ratio':>7}",
    ]
    for name, m in cascade["per_method"].items():
        seconds = "-" if m["seconds"] is None else f"{m['seconds']:.2f}"
        ratio = f"{m['seconds'] / m['bound_seconds']:.2f}" if m["seconds"] and m["bound_seconds"] else "-"
        lines.append(f"  {name:<24}{m['needed']:>8g}{m['alone']:>7g}{m['measured_rows']:>7g}{seconds:>10}"
                     f"{m['bound_seconds']:>9.2f}{ratio:>7}")
    split = ", ".join(f"{part} {seconds:.1f}" for part, seconds in cascade["seconds_parts"].items())
    lines += [
        f"  passes per image and stage: needed {passes['needed']:g}, each method alone {passes['alone']:g}, "
        f"the runner's rows {passes['measured_rows_with_grad']:g} with autograd + "
        f"{passes['measured_rows_forward_only']:g} forward only ({passes['methods_forward_only']:g} by the methods, "
        "outside the bound)",
        f"  ours {cascade['seconds']:.1f} s, fastest of {len(cascade['seconds_all'])} ({split} s)",
        f"  bound {cascade['bound_seconds']:.1f} s = {passes['needed']:g} x "
        f"{cascade['gradient_seconds_per_row']:.2e} s x {cascade['images']} x {cascade['stages']}; "
        f"ours / bound {cascade['ratio']:.2f}",
    ]
    return lines
