"""The protocol matrix: which sanity-check verdicts survive a change of the randomization protocol.

Every critique of the sanity checks says the verdict depends on choices the paper fixed quietly (Hedström et
al. 2023, Binder et al. 2023). This evaluation runs the registered variants
(:mod:`saliency_sanity.randomization.variants`) under each configured protocol setting, for several seeds, and
writes the verdict matrix (:func:`saliency_sanity.verdicts.verdict_table`): per method, variant, setting and
metric the mean score over images and seeds, its bootstrap CI, pass / unclear / fail against tau, the seeds'
agreement (Krippendorff's alpha) and whether the setting flips the reference setting's verdict.

A setting (``settings: {name: {law, granularity, order, batchnorm}}``) changes these protocol axes of the run's
randomization section; ``{}`` is the run's own protocol, null leaves the setting out. A setting that changes nothing for a model (module
granularity where each block is one module; BatchNorm statistics where there is no BatchNorm, or where the law
is not the model's own initializer, which alone reads that switch; order and granularity where no variant reads
the cascade's curve, since the fully randomized model is then a fresh draw of the same protocol) is left out for
that model and logged. Each seed re-draws the weights, the methods' noise and sMPRT's copies; within a seed,
stage k of every setting draws the same method noise, so that settings differ by their protocol alone.

Shared work: for each seed, the stages of every setting are one run of the runner against one stage 0 (the
trained model's maps are computed once per seed, not once per setting), the ``full`` mode replaces the cascade
where no configured variant reads the curve, and the activation scale of every block is recorded during the
stage's own forward pass. sMPRT and RandomLogit run under the reference setting only (RandomLogit re-draws no
weights, so every setting would repeat it), unless ``full_matrix``.

The archive keeps each block's activation scale (root mean square of its output over the images) at stage 0 and
after full randomization under each setting and seed: Binder et al.'s diagnostic of what randomization does to
the scale of the network's activations, which by itself can move a map.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from saliency_sanity.config import one_of, positive_int, randomization_protocol
from saliency_sanity.evaluation.registry import EvaluationRun, register_evaluation
from saliency_sanity.models.base import GRANULARITIES, SanityModel
from saliency_sanity.randomization.laws import MODEL_LAW, LawSpec
from saliency_sanity.randomization.modes import ORDERS, ModeInputs, Stage, mode_spec
from saliency_sanity.randomization.runner import BATCHNORM, RunResult, Settings, run_stages
from saliency_sanity.randomization.variants import (
    RANDOM_LOGIT,
    RANDOMIZED,
    SMOOTHED,
    VARIANTS,
    NoiseAverage,
    RunScores,
    Variant,
)
from saliency_sanity.similarity import METRICS
from saliency_sanity.verdicts import ENTROPY, SCORE_COLUMNS, VERDICT_COLUMNS, verdict_table

log = logging.getLogger(__name__)

AXES = ("law", "granularity", "order", "batchnorm")
DEFAULT_TAU = {"spearman_abs": 0.5, "spearman_signed": 0.5, "ssim": 0.5, "hog": 0.5, ENTROPY: 0.05}
KEY = "evaluations.protocols"
BATCHNORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # the layers whose running statistics reset


@dataclass(frozen=True)
class ProtocolSetting:
    """One column group of the matrix: a name and the protocol axes it sets."""

    name: str
    law: LawSpec
    granularity: str
    order: str
    batchnorm: str

    @classmethod
    def parse(cls, name: str, axes: Mapping[str, Any] | None, base: Settings) -> ProtocolSetting:
        axes = dict(axes or {})
        unknown = sorted(set(axes) - set(AXES))
        if unknown:
            raise ValueError(f"config key {KEY}.settings.{name} sets {unknown}; a setting sets any of {list(AXES)}")
        key = f"{KEY}.settings.{name}"
        return cls(
            name,
            LawSpec.parse(axes["law"], f"{key}.law") if "law" in axes else base.law,
            one_of(axes.get("granularity", base.granularity), GRANULARITIES, f"{key}.granularity"),
            one_of(axes.get("order", base.order), ORDERS, f"{key}.order"),
            one_of(axes.get("batchnorm", base.batchnorm), BATCHNORM, f"{key}.batchnorm"),
        )

    def inputs(self, seed: int) -> ModeInputs:
        return ModeInputs(seed=seed, law=self.law, granularity=self.granularity, order=self.order)

    def moot_for(self, model: SanityModel, reference: ProtocolSetting, reads_curve: bool = True) -> str | None:
        """Why this setting cannot differ from ``reference`` on ``model`` (None: it can). Without a variant that reads
        the cascade's curve (``reads_curve``), only the fully randomized model counts, and order and granularity
        leave its weights distributed alike: a fresh draw of the same protocol, not another protocol."""
        if self.name == reference.name:
            return None
        changed = [axis for axis in AXES if getattr(self, axis) != getattr(reference, axis)]
        if not reads_curve and changed and set(changed) <= {"order", "granularity"}:
            return "order and granularity change only the cascade's curve, which no configured variant reads"
        if changed == ["granularity"] and model.randomization_units("modules") == model.block_names:
            return "each of its blocks is one module"
        if changed == ["batchnorm"]:
            if not any(isinstance(m, BATCHNORM_LAYERS) for m in model.modules()):
                return "it has no BatchNorm"
            if self.law.law.name != MODEL_LAW:
                return f"law {self.law.law.name!r} does not read the BatchNorm switch"
        return None


@contextmanager
def batchnorm_mode(model: SanityModel, batchnorm: str) -> Iterator[None]:
    """The model's BatchNorm switch (read by its own initializer) set while a setting's stages are drawn."""
    before = getattr(model, "reset_bn_statistics", None)
    if before is not None:
        model.reset_bn_statistics = batchnorm == "reset"
    try:
        yield
    finally:
        if before is not None:
            model.reset_bn_statistics = before


@dataclass
class Sweep:
    """One run of the runner over several settings: stage 0, then each setting's stages; ``segments`` names the
    setting of each stage after 0."""

    model: SanityModel
    settings: Sequence[ProtocolSetting]
    mode: str
    seed: int

    @property
    def segments(self) -> list[str]:
        spec = mode_spec(self.mode)
        return [s.name for s in self.settings for _ in spec.stage_names(self.model, s.inputs(self.seed))[1:]]

    def stages(self) -> Iterator[Stage]:
        """Stage 0 once, then each setting's other stages under their own indices: stage k of every setting draws
        the same method noise (common random numbers), so settings differ by their protocol alone."""
        spec = mode_spec(self.mode)
        for number, setting in enumerate(self.settings):
            with batchnorm_mode(self.model, setting.batchnorm):
                for stage in spec.stages(self.model, setting.inputs(self.seed)):
                    if stage.index == 0 and number > 0:
                        continue  # one stage 0 for every setting
                    yield replace(stage, name=f"{setting.name}:{stage.name}")

    def scores(self, result: RunResult) -> dict[tuple[str, tuple[str, str]], RunScores]:
        """(setting, series) -> that setting's stages, stage 0 first."""
        segments = np.array(self.segments)
        scores = {}
        for setting in self.settings:
            picked = [0, *(1 + np.flatnonzero(segments == setting.name)).tolist()]
            for series in result.series:
                scores[setting.name, series] = RunScores(
                    [{m: np.asarray(v, dtype=float) for m, v in result.scores[i][series].items()} for i in picked],
                    [result.entropy[i].get(series) for i in picked])
        return scores


class ActivationScale:
    """Each block's output RMS over the inputs, recorded by forward hooks during the stage's own forward pass."""

    def __init__(self, blocks: Sequence[str]) -> None:
        self.blocks = list(blocks)
        self.rms: list[np.ndarray] = []  # (blocks,) per stage, in the order the stages ran

    @contextmanager
    def __call__(self, stage: Stage) -> Iterator[None]:
        values = np.full(len(self.blocks), np.nan)
        squares = [[0.0, 0] for _ in self.blocks]

        def hook(position: int):
            def record(module, inputs, output):
                if isinstance(output, torch.Tensor):
                    squares[position][0] += float(output.detach().double().square().sum())
                    squares[position][1] += output.numel()
            return record

        handles = [stage.model.get_submodule(name).register_forward_hook(hook(i)) for i, name in enumerate(self.blocks)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        for i, (total, count) in enumerate(squares):
            if count:
                values[i] = np.sqrt(total / count)
        self.rms.append(values)


def _variants(names: Sequence[str]) -> list[Variant]:
    return [VARIANTS.get_entry(name, f"{KEY}.variants") for name in names]


def check_protocols(params: Mapping[str, Any]) -> None:
    """The section's names and values, checked when the DAG is planned: settings, variants, sMPRT, tau."""
    base = Settings.from_config({})
    settings = params.get("settings") or {}
    for name, axes in settings.items():
        if axes is not None:
            ProtocolSetting.parse(name, axes, base)
    reference = params.get("reference", "paper")
    if settings and settings.get(reference) is None:
        raise ValueError(f"config key {KEY}.reference is {reference!r}, not one of the settings "
                         f"{[name for name, axes in settings.items() if axes is not None]}")
    _variants(params.get("variants") or ())
    _noise_average(params.get("smprt"))
    positive_int(params.get("seeds", 1), f"{KEY}.seeds")
    unknown = sorted(set(params.get("tau") or {}) - set(DEFAULT_TAU) - set(METRICS))
    if unknown:
        raise ValueError(f"config key {KEY}.tau names {unknown}, neither a similarity metric nor {ENTROPY!r}")


def _noise_average(section: Mapping[str, Any] | None) -> NoiseAverage:
    try:
        return NoiseAverage(**(section or {}))
    except TypeError as error:
        raise ValueError(f"config key {KEY}.smprt takes n_samples and noise_level, got {dict(section or {})}") from error


@register_evaluation("protocols", columns=VERDICT_COLUMNS, reads=("similarity",), check=check_protocols)
def protocols(
    run: EvaluationRun,
    *,
    seeds: int = 3,
    settings: Mapping[str, Mapping[str, Any] | None] | None = None,
    reference: str = "paper",
    variants: Sequence[str] = ("mprt", "emprt", "smprt", "random_logit"),
    full_matrix: bool = False,
    smprt: Mapping[str, Any] | None = None,
    entropy_bins: int = 100,
    tau: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Verdicts of every method under each protocol setting and variant (the verdict matrix)."""
    base = Settings.from_config(run.config)
    n_seeds = positive_int(seeds, f"{KEY}.seeds")
    entropy_bins = positive_int(entropy_bins, f"{KEY}.entropy_bins")
    if not 0 < confidence < 1:
        raise ValueError(f"config key {KEY}.confidence must lie in (0, 1), got {confidence}")
    parsed = [ProtocolSetting.parse(name, axes, base) for name, axes in (settings or {reference: {}}).items()
              if axes is not None]  # null leaves a setting out (a preset on top of another)
    parsed.sort(key=lambda setting: setting.name != reference)  # the reference first (the job's JSON sorts the keys)
    by_name = {s.name: s for s in parsed}
    chosen = _variants(variants)
    model, examples = run.job.model, run.job.examples
    reads_curve = any(v.needs_curve for v in chosen)
    kept = []
    for setting in parsed:
        reason = setting.moot_for(model, by_name[reference], reads_curve)
        if reason:
            log.info("protocol setting %s left out for %s: %s", setting.name, run.job.name, reason)
        else:
            kept.append(setting)
    reference_only = [by_name[reference]]
    plan = {  # run -> the settings it covers: every kept one where a variant it feeds depends on the protocol
        run_name: kept if any(v.protocol_dependent for v in chosen if v.run == run_name)
        and (run_name == RANDOMIZED or full_matrix) else reference_only
        for run_name in (RANDOMIZED, SMOOTHED, RANDOM_LOGIT)
    }
    needed = {v.run for v in chosen}
    randomized_mode = "cascading" if reads_curve else "full"
    average = _noise_average(smprt) if SMOOTHED in needed else None
    harness = run.harness
    methods = harness.applicable(model)
    normalization = base.normalization_for(run.job.dataset)
    rows: list[pd.DataFrame] = []
    activation = np.full((n_seeds, 1 + len(kept), len(model.block_names)), np.nan)
    runs = {RANDOMIZED: (randomized_mode, None), SMOOTHED: ("full", average), RANDOM_LOGIT: ("random_logit", None)}
    sweeps = [(seed, run_name, Sweep(model, plan[run_name], runs[run_name][0], seed))
              for seed in range(base.seed, base.seed + n_seeds) for run_name in runs if run_name in needed]
    maps = sum(1 + len(sweep.segments) for *_, sweep in sweeps) * len(harness.variants(model))
    progress = tqdm(total=maps, desc=f"{run.job.name} protocols", unit="map")
    for seed, run_name, sweep in sweeps:
        log.info("seed %d: %s run (%s mode) over settings %s", seed, run_name, sweep.mode,
                 [s.name for s in sweep.settings])
        harness.seconds.clear()  # the run's own method times in its log
        harness.reseed(seed)  # the methods' noise follows the seed too
        probe = ActivationScale(model.block_names)
        result = run_stages(sweep.stages(), harness, methods, examples, replace(base, seed=seed), normalization,
                            progress, average=runs[run_name][1], entropy_bins=entropy_bins,
                            probe=probe if run_name == RANDOMIZED else None)
        scores = sweep.scores(result)
        if run_name == RANDOMIZED:
            activation[seed - base.seed] = activation_rows(probe, sweep, kept)
        for variant in (v for v in chosen if v.run == run_name):
            for (setting, series), run_scores in scores.items():
                for metric, values in variant.score(run_scores).items():
                    rows.append(pd.DataFrame({
                        "method": series[0], "baseline": series[1], "variant": variant.name, "setting": setting,
                        "metric": metric, "seed": seed, "image": np.arange(len(values)), "value": values}))
    progress.close()
    run.keep(activation_blocks=np.array(model.block_names, dtype=str),
             activation_settings=np.array(["original", *(s.name for s in kept)], dtype=str),
             activation_rms=activation,
             settings=np.array([s.name for s in kept], dtype=str),
             setting_protocols=np.array([describe(s) for s in kept], dtype=str))
    table = pd.DataFrame(pd.concat(rows, ignore_index=True), columns=list(SCORE_COLUMNS))
    thresholds = {**DEFAULT_TAU, **(tau or {})}
    return verdict_table(table, criteria={v.name: v.criterion for v in chosen}, tau=thresholds, reference=reference,
                         level=confidence, n_boot=n_boot)


def activation_rows(probe: ActivationScale, sweep: Sweep, kept: Sequence[ProtocolSetting]) -> np.ndarray:
    """(1 + settings, blocks): stage 0, then each setting's last stage (positions in the order the stages ran)."""
    segments = sweep.segments
    last = {name: 1 + max(i for i, s in enumerate(segments) if s == name) for name in set(segments)}
    return np.stack([probe.rms[0], *(probe.rms[last[s.name]] for s in kept)])


def describe(setting: ProtocolSetting) -> str:
    """The protocol of a setting in words, as the captions give the run's."""
    law = {"name": setting.law.law.name, **setting.law.params}
    return randomization_protocol({"law": law, "granularity": setting.granularity, "order": setting.order,
                                   "batchnorm": setting.batchnorm}, "imagenet")
