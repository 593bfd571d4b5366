"""The randomization tests: explain a model at every stage and compare each map with stage 0.

One run = one checkpoint x one mode (a :mod:`~saliency_sanity.randomization.modes` entry:
``cascading``, ``independent``, ``labels``, ...). Per stage: the stage's model is built once, one
forward pass gives the predictions (and so the targets, unless the stage brings its own), then
the :class:`~saliency_sanity.harness.Harness` explains all images with every method that applies,
and each map is compared with the stage-0 map of the same image and method on every registered
similarity metric (:mod:`saliency_sanity.similarity`). Outputs follow
:mod:`saliency_sanity.contracts`: the tidy CSV and the maps archive (:func:`write_maps`): the
normalized maps as compared, in float16, at stage 0 for every image and at every stage for the
first ``randomization.grid_images`` images.

Seeding: the randomized weights come from ``config['seed']`` (see
:mod:`~saliency_sanity.randomization.blocks`); a stochastic method's noise from the seed, the
stage and its noise key (:class:`~saliency_sanity.context.Context`), so a rerun reproduces every
map and stage 0 is the same in every mode.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_sanity import similarity
from saliency_sanity.baselines import BaselineSpec
from saliency_sanity.config import config_value, one_of, positive_int
from saliency_sanity.contracts import MAPS_ARRAYS, NO_BASELINE, SIMILARITY_COLUMNS
from saliency_sanity.data import Examples
from saliency_sanity.harness import Harness
from saliency_sanity.methods.completeness import completeness_error, logits_of, target_logits
from saliency_sanity.methods.registry import Method
from saliency_sanity.jobs import load_job
from saliency_sanity.models import SanityModel, load_checkpoint, read_record
from saliency_sanity.models.base import GRANULARITIES
from saliency_sanity.randomization.laws import MODEL_LAW, LawSpec
from saliency_sanity.randomization.modes import ORDERS, RANDOM_LABEL_MODEL, ModeInputs, Stage, mode_spec
from saliency_sanity.randomization.variants import NoiseAverage, discrete_entropy
from saliency_sanity.runtime import atomic_write, write_npz

log = logging.getLogger(__name__)

EXPLAIN = ("predicted", "true_label")
BATCHNORM = ("keep", "reset")  # BatchNorm running statistics on randomization: kept (paper) or reset


@dataclass(frozen=True)
class Settings:
    """The parts of the resolved config a randomization test reads, checked up front."""

    seed: int
    n_images: int | None  # None: all (natural images)
    explain: str
    batch_size: int | None
    method_params: dict[str, dict[str, Any]]
    normalization: str | None
    hog_pixels_per_cell: int
    ssim_gaussian: bool
    structure_input: str
    batchnorm: str = "keep"
    law: LawSpec = field(default_factory=lambda: LawSpec.parse(MODEL_LAW))  # how a block is re-initialized
    granularity: str = "blocks"  # what each stage re-initializes: blocks | modules
    order: str = "top_down"  # top_down | bottom_up
    images: dict[str, Any] | None = None  # natural-image source (ImageNet models): source, labels, size
    grid_images: int | None = None  # images whose maps the archive keeps at every stage (first n); None: all
    baselines: tuple[BaselineSpec, ...] = ()  # each path method runs again with each of these ...
    baseline_modes: tuple[str, ...] = ()  # ... in these modes

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        grid_images = config_value(config, "randomization.grid_images", None)
        batch_size = config_value(config, "randomization.batch_size", None)
        return cls(
            seed=int(config.get("seed", 0)),
            n_images=_optional_positive_int(config_value(config, "randomization.n_images", None), "randomization.n_images"),
            explain=one_of(config_value(config, "randomization.explain", "predicted"), EXPLAIN, "randomization.explain"),
            batch_size=_optional_positive_int(batch_size, "randomization.batch_size"),
            method_params={name: dict(p or {}) for name, p in (config.get("methods") or {}).items()},
            normalization=config_value(config, "similarity.normalization", None),
            hog_pixels_per_cell=int(config_value(config, "similarity.hog_pixels_per_cell", 7)),
            ssim_gaussian=bool(config_value(config, "similarity.ssim_gaussian", True)),
            structure_input=one_of(config_value(config, "similarity.structure_input", "original"),
                                   similarity.STRUCTURE_INPUTS, "similarity.structure_input"),
            batchnorm=one_of(config_value(config, "randomization.batchnorm", "keep"), BATCHNORM, "randomization.batchnorm"),
            law=LawSpec.parse(config_value(config, "randomization.law", MODEL_LAW)),
            granularity=one_of(config_value(config, "randomization.granularity", "blocks"), GRANULARITIES,
                               "randomization.granularity"),
            order=one_of(config_value(config, "randomization.order", "top_down"), ORDERS, "randomization.order"),
            images=config.get("images"),
            grid_images=_optional_positive_int(grid_images, "randomization.grid_images"),
            baselines=tuple(BaselineSpec.parse(b, "randomization.baselines")
                            for b in config_value(config, "randomization.baselines", None) or []),
            baseline_modes=tuple(mode_spec(m, "randomization.baseline_modes").name
                                 for m in config_value(config, "randomization.baseline_modes", None) or []),
        )

    def baselines_for(self, mode: str) -> tuple[BaselineSpec, ...]:
        """The baselines the path methods run with besides their configured ones in a test of ``mode``."""
        return self.baselines if mode in self.baseline_modes else ()

    def normalization_for(self, dataset: str) -> str:
        """The config's choice, else the paper's: max for the MNIST family, percentile otherwise."""
        return self.normalization or ("max" if "mnist" in dataset else "percentile")

    def harness(self) -> Harness:
        """The harness of these settings: every registered method, with the config's parameters."""
        return Harness(self.method_params, seed=self.seed, batch_size=self.batch_size)


def _optional_positive_int(value: Any, key: str) -> int | None:
    return None if value is None else positive_int(value, key)


@dataclass(frozen=True)
class KeptMaps:
    """One method's maps at one stage as the archive keeps them: the normalized, channel-reduced maps
    that were compared (:class:`similarity.PreparedMaps`), in float16, for the first ``n`` images."""

    absolute: np.ndarray  # (n, H, W) float16 in [0, 1]
    signed: np.ndarray  # (n, H, W) float16 in [-1, 1]

    @classmethod
    def of(cls, prepared: similarity.PreparedMaps, n: int | None = None) -> KeptMaps:
        return cls(prepared.absolute[:n].astype(np.float16), prepared.signed[:n].astype(np.float16))


Series = tuple[str, str]  # (method, baseline label): one method's maps with one baseline (contracts.NO_BASELINE: none)


@dataclass
class RunResult:
    """Outputs of a run, gathered stage by stage, per series (each method's configured one first)."""

    series: list[Series]
    stages: list[str] = field(default_factory=list)
    maps: list[list[KeptMaps]] = field(default_factory=list)  # [stage][series]: all images at stage 0, else grid
    targets: list[np.ndarray] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    scores: list[dict[Series, dict[str, list[float]]]] = field(default_factory=list)  # [stage][series][metric]
    # [stage][series]: each map's completeness error, for methods registered with completeness=True
    completeness: list[dict[Series, np.ndarray]] = field(default_factory=list)
    # [stage][series]: each map's discrete entropy (variants.discrete_entropy), when run_stages is given entropy_bins
    entropy: list[dict[Series, np.ndarray]] = field(default_factory=list)
    # baseline label -> its first draw for the first grid images at stage 0, (G, C, H, W) mapped to [0, 1]
    baseline_display: dict[str, np.ndarray] = field(default_factory=dict)
    # wall seconds of the runner's own parts; the methods' are the harness's (Harness.seconds)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.series]

    @property
    def baselines(self) -> list[str]:
        return [baseline for _, baseline in self.series]


PARTS = ("stage_models", "predictions", "completeness", "similarity")


def run_stages(
    stages, harness: Harness, methods: list[Method], examples: Examples, settings: Settings,
    normalization: str, progress: tqdm | None = None, baselines: Sequence[BaselineSpec] = (), *,
    average: NoiseAverage | None = None, entropy_bins: int | None = None,
    probe: Callable[[Stage], ContextManager] | None = None,
) -> RunResult:
    """Explain the examples at every stage, every method with its configured baseline and each path method
    with each of ``baselines``, and score each map against the same series' stage-0 map.

    ``average``: each map is the mean of the maps of noisy copies of its input (sMPRT), the copies explained a
    bounded number at a time, the same copies at every stage; completeness is then not checked. ``entropy_bins``:
    record each map's discrete entropy. ``probe(stage)``: a context entered around the stage's forward pass
    on the inputs (e.g. to record activations), so that no pass is added for it."""
    images, labels = examples.images, examples.labels
    names = {m.name for m in methods}
    by_name = {m.name: m for m in methods}
    seconds = dict.fromkeys(PARTS, 0.0)
    result: RunResult | None = None
    reference: dict[Series, similarity.PreparedMaps] = {}
    clock = time.perf_counter()
    for stage in stages:
        seconds["stage_models"] += time.perf_counter() - clock
        if result is None:  # the series, from the first stage's model
            variants = {key: h for key, h in harness.variants(stage.model, baselines).items() if key[0] in names}
            result = RunResult(list(variants), seconds=seconds)
        clock = time.perf_counter()
        x = stage.transform(images) if stage.transform is not None else images
        with probe(stage) if probe is not None else nullcontext():
            logits = logits_of(stage.model, x, settings.batch_size)
        predictions = logits.argmax(dim=1)
        seconds["predictions"] += time.perf_counter() - clock
        targets = predictions if settings.explain == "predicted" else labels
        if stage.targets is not None:
            targets = stage.targets(logits, labels)
        stage_maps, stage_scores, stage_completeness, stage_entropy, baseline_logits = {}, {}, {}, {}, {}
        if progress is not None:
            progress.set_postfix_str(stage.name)
        for name, label, maps in _explain(harness, stage, x, targets, baselines, average, settings.seed):
            key = (name, label)
            if key not in variants:
                continue
            clock = time.perf_counter()
            bound = variants[key].bind(by_name[name], stage.index)
            if stage.index == 0 and label != NO_BASELINE and label not in result.baseline_display:
                result.baseline_display[label] = _displayed(bound.baselines_for(x)[0][:settings.grid_images],
                                                            examples)
            if by_name[name].completeness and average is None:
                drawn = (label, bound.draws)
                if drawn not in baseline_logits:  # series with the same baseline share its forward pass
                    draws = bound.baselines_for(x)  # (draws, *x.shape)
                    baseline_logits[drawn] = target_logits(
                        logits_of(stage.model, draws.flatten(0, 1), settings.batch_size),
                        targets.repeat(len(draws))).view(len(draws), -1).mean(0)
                stage_completeness[key] = completeness_error(maps, target_logits(logits, targets),
                                                             baseline_logits[drawn]).cpu().numpy()
                seconds["completeness"] += time.perf_counter() - clock
                clock = time.perf_counter()
            prepared = similarity.prepare(maps.cpu().numpy(), normalization=normalization,
                                          hog_pixels_per_cell=settings.hog_pixels_per_cell,
                                          ssim_gaussian=settings.ssim_gaussian,
                                          structure_input=settings.structure_input)
            reference.setdefault(key, prepared)
            stage_scores[key] = similarity.compare(reference[key], prepared)
            stage_maps[key] = KeptMaps.of(prepared, None if stage.index == 0 else settings.grid_images)
            if entropy_bins is not None:
                stage_entropy[key] = discrete_entropy(prepared.absolute, entropy_bins)
            seconds["similarity"] += time.perf_counter() - clock
            if progress is not None:
                progress.update()
        result.stages.append(stage.name)
        result.maps.append([stage_maps[key] for key in result.series])
        result.targets.append(targets.cpu().numpy())
        result.predictions.append(predictions.cpu().numpy())
        result.scores.append(stage_scores)
        result.completeness.append(stage_completeness)
        result.entropy.append(stage_entropy)
        del stage  # free the stage's model before the next one is built
        clock = time.perf_counter()
    if result is None:
        raise ValueError("the randomization mode yielded no stage")
    harness.log_timings(len(result.stages))
    for key in result.series:
        if result.completeness and key in result.completeness[0]:
            errors = np.stack([stage[key] for stage in result.completeness])
            log.info("%s [%s] completeness error |sum - delta| / |delta|: median %.2g, max %.2g at stage 0; "
                     "median %.2g, max %.2g over all stages", *key, np.median(errors[0]), errors[0].max(),
                     np.median(errors), errors.max())
    return result


def _explain(harness: Harness, stage: Stage, x: torch.Tensor, targets: torch.Tensor, baselines: Sequence[BaselineSpec],
             average: NoiseAverage | None, seed: int) -> Iterator[tuple[str, str, torch.Tensor]]:
    """(method, baseline, maps) of every series at this stage; with ``average``, each map is the mean of the maps of
    the input's noisy copies, explained ``average.images_per_call`` copies at a time."""
    if average is None:
        yield from harness.iter_explain_baselines(stage.model, x, targets, baselines, stage=stage.index)
        return
    reduced: dict[tuple[str, str], list[torch.Tensor]] = {}
    for images in average.chunks(len(x)):
        copies = average.copies(x[images], seed, first=images.start)
        for name, label, maps in harness.iter_explain_baselines(
                stage.model, copies, targets[images].repeat_interleave(average.n_samples), baselines, stage=stage.index):
            reduced.setdefault((name, label), []).append(average.reduce(maps))
    for (name, label), parts in reduced.items():
        yield name, label, torch.cat(parts)


def _displayed(baseline: torch.Tensor, examples: Examples) -> np.ndarray:
    """A baseline as figures show it: the valid range of the model's input mapped to [0, 1] per channel (the
    inverse of the input normalization), float16."""
    low, high = examples.valid_range.bounds(baseline)
    return ((baseline - low) / (high - low)).clamp(0, 1).cpu().numpy().astype(np.float16)


def similarity_table(result: RunResult, image_ids: np.ndarray, identity: dict[str, str]) -> pd.DataFrame:
    """The tidy table: one row per (stage, series, metric, image), columns SIMILARITY_COLUMNS."""
    columns: dict[str, list] = {column: [] for column in SIMILARITY_COLUMNS}
    n = len(image_ids)
    for stage_index, (stage, scores) in enumerate(zip(result.stages, result.scores)):
        for method, baseline in result.series:
            for metric, values in scores[method, baseline].items():
                columns["stage"] += [stage] * n
                columns["stage_index"] += [stage_index] * n
                columns["method"] += [method] * n
                columns["baseline"] += [baseline] * n
                columns["metric"] += [metric] * n
                columns["image"] += image_ids.tolist()
                columns["value"] += values
    rows = len(columns["value"])
    for key, value in identity.items():
        columns[key] = [value] * rows
    return pd.DataFrame(columns, columns=list(SIMILARITY_COLUMNS))


def write_maps(path: Path, result: RunResult, images: torch.Tensor,
                labels: torch.Tensor, identity: dict[str, str], *, normalization: str,
                display: torch.Tensor | None = None) -> None:
    """The maps archive: the maps as compared (normalized, summed over channels), not the raw maps.

    With M series (a method with a baseline, :mod:`saliency_sanity.contracts`), S stages, N images (C, H, W)
    and G = min(grid_images, N) grid images:

    - ``original_abs``, ``original_signed``: (M, N, H, W) float16, stage 0 of every image;
    - ``maps_abs``, ``maps_signed``: (M, S, G, H, W) float16, every stage of the first G images;
    - ``normalization``: "max" or "percentile" (0-d str), how the maps were normalized
      (:mod:`saliency_sanity.similarity`): absolute maps in [0, 1], signed maps in [-1, 1];
    - ``images`` (N, C, H, W) float32, the model's input; ``display`` (N, C, H, W) float32 in
      [0, 1], what figures show as the input, only when the caller has one;
    - ``labels`` (N,), ``targets`` and ``predictions`` (S, N) int64; ``methods`` (M,), ``stages``
      (S,) str, ``baselines`` (M,) str: the series are (methods[i], baselines[i]); ``dataset``, ``model``,
      ``mode`` (0-d str);
    - ``baseline_labels`` (B,) str and ``baseline_display`` (B, G, C, H, W) float16 in [0, 1], when a series
      has a baseline: each baseline's first draw for the first G images, its valid range mapped to [0, 1];
    - ``completeness`` (M, S, N) float64, only when a method is registered with ``completeness=True``:
      each map's ``|sum phi - (f(x) - f(x'))| / |f(x) - f(x')|``, NaN for the other methods.

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
        "methods": np.array(result.methods, dtype=str),
        "baselines": np.array(result.baselines, dtype=str),
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
    missing = set(MAPS_ARRAYS) - set(arrays)
    if missing:
        raise RuntimeError(f"the maps archive lacks {sorted(missing)} of its contract (saliency_sanity.contracts)")
    if any(result.completeness):
        arrays["completeness"] = np.stack([
            np.stack([stage.get(key, np.full(n, np.nan)) for stage in result.completeness])
            for key in result.series])
    if result.baseline_display:
        arrays["baseline_labels"] = np.array(list(result.baseline_display), dtype=str)
        arrays["baseline_display"] = np.stack([shown[:grid] for shown in result.baseline_display.values()])
    if display is not None:
        shown = display.detach().cpu().numpy().astype(np.float32)
        if shown.ndim != 4 or shown.shape[0] != n or shown.shape[2:] != arrays["images"].shape[2:]:
            raise ValueError(f"display images have shape {shown.shape}, expected (N, C, H, W) with N, H, W "
                             f"of the images {arrays['images'].shape}")
        arrays["display"] = shown
    write_npz(path, arrays)


def load_random_label_model(path: Path | None, record: dict, device: torch.device) -> SanityModel:
    if path is None:
        raise ValueError("mode 'labels' compares with a model trained on random labels: pass random_label_model_path")
    other = read_record(path)
    if (other["dataset"], other["arch"]) != (record["dataset"], record["arch"]):
        raise ValueError(
            f"the random-label model {path} is a {other['dataset']}/{other['arch']} model, "
            f"but the true-label model is {record['dataset']}/{record['arch']}"
        )
    return load_checkpoint(path, device)


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
    spec = mode_spec(mode)
    settings = Settings.from_config(config)
    harness = settings.harness()
    baselines = settings.baselines_for(mode)
    job = load_job(model_path, harness, seed=settings.seed, n_images=settings.n_images, images=settings.images,
                   data_dir=data_dir or config.get("data_dir", "data"), device=device, baselines=baselines)
    model, record, examples, dataset = job.model, job.record, job.examples, job.dataset
    if hasattr(model, "reset_bn_statistics"):  # models with BatchNorm (Inception v3)
        model.reset_bn_statistics = settings.batchnorm == "reset"
    random_label_model = None
    if RANDOM_LABEL_MODEL in spec.needs:
        random_label_model = load_random_label_model(
            Path(random_label_model_path) if random_label_model_path else None, record, job.device)
    inputs = ModeInputs(seed=settings.seed, random_label_model=random_label_model, law=settings.law,
                        granularity=settings.granularity, order=settings.order)
    stages = spec.stages(model, inputs)
    methods = harness.applicable(model)
    identity = {"dataset": dataset, "model": job.name, "mode": mode}
    normalization = settings.normalization_for(dataset)
    series = len(harness.variants(model, baselines))
    log.info("%s %s: %d images, %d methods, %d series with the baselines %s, %s normalization, device %s",
             job.name, mode, len(examples.images), len(methods), series, [b.label for b in baselines] or "configured",
             normalization, job.device)

    with tqdm(total=len(spec.stage_names(model, inputs)) * series, desc=f"{job.name} {mode}", unit="map") as progress:
        result = run_stages(stages, harness, methods, examples, settings, normalization, progress, baselines)

    table = similarity_table(result, np.arange(len(examples.images)), identity)
    atomic_write(Path(out_csv), lambda tmp: table.to_csv(tmp, index=False))
    write_maps(Path(out_maps), result, examples.images, examples.labels, identity, normalization=normalization,
               display=examples.display)
    return table
