"""The randomization tests: explain a model at every stage and compare each map with stage 0.

One run = one checkpoint x one mode (``cascading``, ``independent`` or ``labels``). Per stage:
the stage's model is built once, one forward pass gives the predictions (and so the targets),
then every registered method that applies explains all images at once, and each map is
compared with the stage-0 map of the same image and method on the four metrics of
:mod:`saliency_sanity.similarity`. Outputs are the tidy CSV described in DESIGN.md (file contracts)
and the maps archive (:func:`_write_maps`): the normalized maps as compared, in float16, at stage 0
for every image and at every stage for the first ``randomization.grid_images`` images.

Seeding: the randomized weights come from ``config['seed']`` (see :mod:`randomization`); a
stochastic method gets a generator on the device seeded from ``(seed, stage_index, noise_key)``
(the method's name, unless methods share a noise stream: SmoothGrad, SmoothGrad-squared and
VarGrad see the same noisy copies), so a rerun reproduces every map and stage 0 is the same in
every mode. Model-free deterministic methods (edge detectors) do not depend on the stage and are
computed once and reused. Within a stage, methods share work (:mod:`methods.reuse`): the three
smoothings above reduce one set of samples, Guided Grad-CAM reuses the Guided Backprop and
Grad-CAM maps; the first method of such a group pays the time, the others log near zero.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import saliency_sanity.methods  # noqa: F401  (importing the package registers every method)
from saliency_sanity import similarity
from saliency_sanity.data import load_split
from saliency_sanity.methods.registry import Method, available_methods, get_method
from saliency_sanity.methods.reuse import Memo, shared_work
from saliency_sanity.models import SanityModel, load_checkpoint
from saliency_sanity.randomization import ORIGINAL, RANDOMIZATIONS, Stage, derive_seed
from saliency_sanity.runtime import atomic_write, resolve_device, write_npz

log = logging.getLogger(__name__)

MODES = ("cascading", "independent", "labels")
EXPLAIN = ("predicted", "true_label")
BATCHNORM = ("keep", "reset")  # BatchNorm running statistics on randomization: kept (paper) or reset
RANDOM_LABELS_STAGE = "random_labels"
CSV_COLUMNS = ["dataset", "model", "mode", "stage", "stage_index", "method", "metric", "image", "value"]


@dataclass(frozen=True)
class Settings:
    """The parts of the resolved config a randomization test reads, checked up front."""

    seed: int
    n_images: int
    explain: str
    batch_size: int | None
    method_params: dict[str, dict[str, Any]]
    normalization: str | None
    hog_pixels_per_cell: int
    ssim_gaussian: bool
    batchnorm: str = "keep"
    images: dict[str, Any] | None = None  # natural-image source (ImageNet models): source, labels, size
    grid_images: int | None = None  # images whose maps the archive keeps at every stage (first n); None: all

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        randomization = config.get("randomization") or {}
        sim = config.get("similarity") or {}
        explain = randomization.get("explain", "predicted")
        if explain not in EXPLAIN:
            raise ValueError(f"randomization.explain is {explain!r}; choose one of {EXPLAIN}")
        n_images = int(randomization.get("n_images", 0))
        if n_images < 1:
            raise ValueError(f"randomization.n_images must be a positive integer, got {n_images}")
        grid_images = randomization.get("grid_images")
        if grid_images is not None and (isinstance(grid_images, bool) or not isinstance(grid_images, int)
                                        or grid_images < 1):
            raise ValueError(f"randomization.grid_images must be a positive integer (or absent: all images), "
                             f"got {grid_images!r}")
        params = {name: dict(p or {}) for name, p in (config.get("methods") or {}).items()}
        batchnorm = randomization.get("batchnorm", "keep")
        if batchnorm not in BATCHNORM:
            raise ValueError(f"randomization.batchnorm is {batchnorm!r}; choose one of {BATCHNORM}")
        unknown = sorted(set(params) - set(available_methods()))
        if unknown:
            raise ValueError(
                f"unknown method(s) {unknown} in the config's methods section; "
                f"registered methods: {', '.join(available_methods())}"
            )
        return cls(
            seed=int(config.get("seed", 0)),
            n_images=n_images,
            explain=explain,
            batch_size=randomization.get("batch_size"),
            method_params=params,
            normalization=sim.get("normalization"),
            hog_pixels_per_cell=int(sim.get("hog_pixels_per_cell", 7)),
            ssim_gaussian=bool(sim.get("ssim_gaussian", True)),
            batchnorm=batchnorm,
            images=config.get("images"),
            grid_images=grid_images,
        )

    def normalization_for(self, dataset: str) -> str:
        """The config's choice, else the paper's: max for the MNIST family, percentile otherwise."""
        return self.normalization or ("max" if "mnist" in dataset else "percentile")


def read_record(model_path: Path) -> dict:
    """The checkpoint's JSON record (dataset, arch, labels, ...), next to the .pt file."""
    record_path = Path(model_path).with_suffix(".json")
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} (the record of {model_path}) does not exist; retrain the model to write it")
    record = json.loads(record_path.read_text())
    missing = [key for key in ("dataset", "arch") if key not in record]
    if missing:
        raise ValueError(f"{record_path} lacks the key(s) {missing}; retrain the model to rewrite it")
    return record


def _labels_stages(model: SanityModel, random_model: SanityModel) -> Iterator[Stage]:
    yield 0, ORIGINAL, model
    yield 1, RANDOM_LABELS_STAGE, random_model


def _load_random_label_model(path: Path | None, record: dict, device: torch.device) -> SanityModel:
    if path is None:
        raise ValueError("mode 'labels' compares with a model trained on random labels: pass random_label_model_path")
    other = read_record(path)
    if (other["dataset"], other["arch"]) != (record["dataset"], record["arch"]):
        raise ValueError(
            f"the random-label model {path} is a {other['dataset']}/{other['arch']} model, "
            f"but the true-label model is {record['dataset']}/{record['arch']}"
        )
    return load_checkpoint(path, device)


def _stage_names(model: SanityModel, mode: str) -> list[str]:
    return [ORIGINAL, RANDOM_LABELS_STAGE] if mode == "labels" else [ORIGINAL, *model.block_names]


def _resolve_methods(model: SanityModel, settings: Settings) -> list[Method]:
    """Registered methods in registry order, minus those that do not apply to this model."""
    methods = []
    for name in available_methods():
        method = get_method(name)
        if method.applies_to(model):
            methods.append(method)
        else:
            log.info("skipping %s: it does not apply to %s (needs %s)", name, type(model).__name__, sorted(method.requires))
    if not methods:
        raise ValueError(f"no registered method applies to {type(model).__name__}")
    return methods


def _call_params(method: Method, settings: Settings, stage_index: int, device: torch.device) -> dict[str, Any]:
    """The method's config params plus batch size, generator and baseline where it takes them."""
    params = dict(settings.method_params.get(method.name, {}))
    if "batch_size" in method.accepts():
        params.setdefault("batch_size", settings.batch_size)
    if method.stochastic:  # methods with one noise_key get the same noise (and so share samples)
        seed = derive_seed(settings.seed, "stage", stage_index, "method", method.noise_key)
        params["generator"] = torch.Generator(device=device).manual_seed(seed)
    if method.needs_baseline:
        params.setdefault("baseline", None)  # the method's default: zeros in input space
    return params


def _forward(model: SanityModel, images: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """Argmax predictions, in chunks so the memory of the forward pass stays bounded."""
    chunks = images.split(batch_size) if batch_size else (images,)
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in chunks])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _explain(
    method: Method,
    model: SanityModel,
    images: torch.Tensor,
    targets: torch.Tensor,
    params: dict[str, Any],
    reusable: dict[str, np.ndarray],
) -> np.ndarray:
    """One method's maps for all images, on the CPU; model-free deterministic maps are computed once."""
    if method.name in reusable:
        return reusable[method.name]
    maps = method(model, images, targets, **params)
    _synchronize(images.device)
    maps = maps.cpu().numpy()
    if method.model_free and not method.stochastic:
        reusable[method.name] = maps
    return maps


@dataclass(frozen=True)
class KeptMaps:
    """One method's maps at one stage as the archive keeps them: the normalized, channel-reduced maps
    that were compared (:class:`similarity.PreparedMaps`), in float16, for the first ``n`` images."""

    absolute: np.ndarray  # (n, H, W) float16 in [0, 1]
    signed: np.ndarray  # (n, H, W) float16 in [-1, 1]

    @classmethod
    def of(cls, prepared: similarity.PreparedMaps, n: int | None = None) -> KeptMaps:
        return cls(prepared.absolute[:n].astype(np.float16), prepared.signed[:n].astype(np.float16))


@dataclass
class RunResult:
    """Outputs of a run, gathered stage by stage."""

    stages: list[str] = field(default_factory=list)
    maps: list[list[KeptMaps]] = field(default_factory=list)  # [stage][method]: all images at stage 0, else grid
    targets: list[np.ndarray] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    scores: list[dict[str, dict[str, list[float]]]] = field(default_factory=list)  # [stage][method][metric]


def _explain_stages(
    stages: Iterator[Stage],
    methods: list[Method],
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: Settings,
    normalization: str,
    progress: tqdm,
) -> RunResult:
    device = images.device
    result = RunResult()
    reference: dict[str, similarity.PreparedMaps] = {}
    reusable: dict[str, np.ndarray] = {}  # model-free deterministic maps: the same at every stage
    seconds: dict[str, float] = defaultdict(float)
    reused: set[str] = set()  # methods that took work another method had done at the same stage
    for index, name, model in stages:
        memo = Memo()  # the stage's shared work (reuse.py), dropped with the stage
        predictions = _forward(model, images, settings.batch_size)
        targets = predictions if settings.explain == "predicted" else labels
        stage_maps, stage_scores = [], {}
        for method in methods:
            progress.set_postfix_str(f"{name}: {method.name}")
            start, hits = time.perf_counter(), memo.hits
            with shared_work(memo):
                maps = _explain(method, model, images, targets, _call_params(method, settings, index, device), reusable)
            elapsed = time.perf_counter() - start
            seconds[method.name] += elapsed
            if memo.hits > hits:
                reused.add(method.name)
            log.debug("stage %d %s, %s: %.3f s%s", index, name, method.name, elapsed,
                      " (reused shared work)" if memo.hits > hits else "")
            prepared = similarity.prepare(
                maps, normalization=normalization, hog_pixels_per_cell=settings.hog_pixels_per_cell
            )
            reference.setdefault(method.name, prepared)
            stage_scores[method.name] = similarity.compare(
                reference[method.name], prepared, ssim_gaussian=settings.ssim_gaussian
            )
            stage_maps.append(KeptMaps.of(prepared, None if index == 0 else settings.grid_images))
            progress.update()
        result.stages.append(name)
        result.maps.append(stage_maps)
        result.targets.append(targets.cpu().numpy())
        result.predictions.append(predictions.cpu().numpy())
        result.scores.append(stage_scores)
        memo.clear()
        del model  # free the stage's model (and the stage's shared work) before the next one is built
    for method in methods:
        log.info("%s: %.2f s over %d stages%s", method.name, seconds[method.name], len(result.stages),
                 " (reused work of a method that ran before it at the same stage, which paid for it)"
                 if method.name in reused else "")
    return result


def _table(result: RunResult, methods: list[Method], image_ids: np.ndarray, identity: dict[str, str]) -> pd.DataFrame:
    """The tidy table: one row per (stage, method, metric, image), columns CSV_COLUMNS."""
    columns: dict[str, list] = {column: [] for column in CSV_COLUMNS}
    n = len(image_ids)
    for stage_index, (stage, scores) in enumerate(zip(result.stages, result.scores)):
        for method in methods:
            for metric in similarity.METRICS:
                columns["stage"] += [stage] * n
                columns["stage_index"] += [stage_index] * n
                columns["method"] += [method.name] * n
                columns["metric"] += [metric] * n
                columns["image"] += image_ids.tolist()
                columns["value"] += scores[method.name][metric]
    rows = len(columns["value"])
    for key, value in identity.items():
        columns[key] = [value] * rows
    return pd.DataFrame(columns, columns=CSV_COLUMNS)


def _write_maps(path: Path, result: RunResult, methods: list[Method], images: torch.Tensor,
                labels: torch.Tensor, identity: dict[str, str], *, normalization: str,
                display: torch.Tensor | None = None) -> None:
    """The maps archive: the maps as compared (normalized, summed over channels), not the raw maps.

    With M methods, S stages, N images (C, H, W) and G = min(grid_images, N) grid images:

    - ``original_abs``, ``original_signed``: (M, N, H, W) float16, stage 0 of every image;
    - ``maps_abs``, ``maps_signed``: (M, S, G, H, W) float16, every stage of the first G images;
    - ``normalization``: "max" or "percentile" (0-d str), how the maps were normalized
      (:mod:`saliency_sanity.similarity`): absolute maps in [0, 1], signed maps in [-1, 1];
    - ``images`` (N, C, H, W) float32, the model's input; ``display`` (N, C, H, W) float32 in
      [0, 1], what figures show as the input, only when the caller has one;
    - ``labels`` (N,), ``targets`` and ``predictions`` (S, N) int64; ``methods`` (M,), ``stages``
      (S,) str; ``dataset``, ``model``, ``mode`` (0-d str).

    float16 is safe because the maps are normalized first: on [-1, 1] its rounding error is at
    most 2**-12 (about 2.4e-4), far below the 2**-8 steps of an 8-bit colour map. The figures
    read these arrays; the similarity scores come from the float64 maps, before rounding.
    """
    n = len(images)
    grid = min(kept.absolute.shape[0] for stage in result.maps for kept in stage)  # stage 0 keeps all n

    def every_stage(kind: str) -> np.ndarray:
        return np.stack([np.stack([getattr(kept, kind)[:grid] for kept in stage]) for stage in result.maps], axis=1)

    arrays = {
        "images": images.cpu().numpy().astype(np.float32),
        "labels": labels.cpu().numpy().astype(np.int64),
        "methods": np.array([m.name for m in methods], dtype=str),
        "stages": np.array(result.stages, dtype=str),
        "original_abs": np.stack([kept.absolute for kept in result.maps[0]]),
        "original_signed": np.stack([kept.signed for kept in result.maps[0]]),
        "maps_abs": every_stage("absolute"),
        "maps_signed": every_stage("signed"),
        "normalization": np.array(normalization, dtype=str),
        "targets": np.stack(result.targets).astype(np.int64),
        "predictions": np.stack(result.predictions).astype(np.int64),
        **{key: np.array(value, dtype=str) for key, value in identity.items()},
    }
    if display is not None:
        shown = display.detach().cpu().numpy().astype(np.float32)
        if shown.ndim != 4 or shown.shape[0] != n or shown.shape[2:] != arrays["images"].shape[2:]:
            raise ValueError(f"display images have shape {shown.shape}, expected (N, C, H, W) with N, H, W "
                             f"of the images {arrays['images'].shape}")
        arrays["display"] = shown
    write_npz(path, arrays)


def _load_images(dataset: str, settings: Settings, data_dir: str | os.PathLike):
    """(images, labels, display images or None): the test split's first n, or natural images for ImageNet."""
    if dataset == "imagenet":
        from saliency_sanity.images import load_images

        source = settings.images or {}
        if not source.get("source"):
            raise ValueError("the ImageNet model needs an image source: set the config key imagenet.images "
                             "('skimage' or a folder of images with labels.json)")
        image_set = load_images(source["source"], labels_file=source.get("labels"), size=int(source.get("size", 299)),
                                n_images=settings.n_images)
        return image_set.images, image_set.labels, image_set.display
    all_images, all_labels = load_split(dataset, data_dir, "test")
    if len(all_images) < settings.n_images:
        raise ValueError(
            f"randomization.n_images is {settings.n_images} but the {dataset} test split has {len(all_images)} images"
        )
    return all_images[: settings.n_images], all_labels[: settings.n_images], None


def run_randomization_test(
    model_path: str | os.PathLike,
    mode: str,
    config: dict,
    out_csv: str | os.PathLike,
    out_maps: str | os.PathLike,
    *,
    random_label_model_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """Run one randomization test and write its tidy CSV and maps archive; returns the table.

    ``data_dir`` defaults to the config's ``data_dir``. ``device`` is resolved with
    :func:`saliency_sanity.runtime.resolve_device` (the CLI passes the config's ``device``).
    """
    if mode not in MODES:
        raise ValueError(f"unknown randomization mode {mode!r}; choose one of {MODES}")
    settings = Settings.from_config(config)
    model_path = Path(model_path)
    record = read_record(model_path)
    dataset = record["dataset"]
    torch_device = resolve_device(device)
    model = load_checkpoint(model_path, torch_device)
    if hasattr(model, "reset_bn_statistics"):  # models with BatchNorm (Inception v3)
        model.reset_bn_statistics = settings.batchnorm == "reset"
    if mode == "labels":
        random_model = _load_random_label_model(
            Path(random_label_model_path) if random_label_model_path else None, record, torch_device
        )
        stages = _labels_stages(model, random_model)
    else:
        stages = RANDOMIZATIONS[mode](model, settings.seed)

    images, labels, display = _load_images(dataset, settings, data_dir or config.get("data_dir", "data"))
    images, labels = images.to(torch_device), labels.to(torch_device)
    methods = _resolve_methods(model, settings)
    identity = {"dataset": dataset, "model": model_path.stem, "mode": mode}
    normalization = settings.normalization_for(dataset)
    log.info("%s %s: %d images, %d methods, %s normalization, device %s",
             model_path.stem, mode, len(images), len(methods), normalization, torch_device)

    total = len(_stage_names(model, mode)) * len(methods)
    with tqdm(total=total, desc=f"{model_path.stem} {mode}", unit="map") as progress:
        result = _explain_stages(stages, methods, images, labels, settings, normalization, progress)

    table = _table(result, methods, np.arange(len(images)), identity)
    atomic_write(Path(out_csv), lambda tmp: table.to_csv(tmp, index=False))
    _write_maps(Path(out_maps), result, methods, images, labels, identity, normalization=normalization, display=display)
    return table
