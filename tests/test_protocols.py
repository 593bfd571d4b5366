"""The protocol matrix (saliency_sanity.evaluation.protocols, .randomization.variants, .verdicts): eMPRT's
entropy, sMPRT's noise averaging, the ``full`` mode, verdicts against tau and their flips, and the settings a
model cannot tell apart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from saliency_sanity.config import resolve_config
from saliency_sanity.evaluation.protocols import ActivationScale, ProtocolSetting, Sweep, activation_rows
from saliency_sanity.models import build_model
from saliency_sanity.names import check_names
from saliency_sanity.randomization import (
    VARIANTS,
    ModeInputs,
    NoiseAverage,
    RunResult,
    RunScores,
    Settings,
    discrete_entropy,
    fully_randomized,
    mode_spec,
)
from saliency_sanity.randomization.laws import LawSpec
from saliency_sanity.randomization.variants import ENTROPY_FLOOR
from saliency_sanity.verdicts import VERDICT_COLUMNS, verdict, verdict_table


# --------------------------------------------------------------------------- eMPRT's entropy


def test_discrete_entropy_of_a_constant_map_an_even_spread_and_noise_are_the_hand_computed_values():
    constant = np.full((1, 28, 28), 0.7)
    halves = np.concatenate([np.zeros((1, 14, 28)), np.ones((1, 14, 28))], axis=1)
    four = ((np.arange(784) % 4) / 3).reshape(1, 28, 28)  # 0, 1/3, 2/3, 1: one value in each of 4 bins
    assert discrete_entropy(constant, 100)[0] == 0.0
    assert discrete_entropy(halves, 100)[0] == pytest.approx(math.log(2))
    assert discrete_entropy(four, 4)[0] == pytest.approx(math.log(4))
    # i.i.d. uniform noise over 100 bins, n = 78,400 values: the plug-in entropy is log 100 less Miller and
    # Madow's bias (bins - 1) / (2 n) = 0.00063, up to sampling error (about 0.0004 here)
    noise = np.random.default_rng(0).random((1, 280, 280))
    assert discrete_entropy(noise, 100)[0] == pytest.approx(math.log(100) - 99 / (2 * 78400), abs=0.002)


def test_emprt_is_the_log_entropy_ratio_and_a_map_that_dies_is_a_large_fall():
    # a map spread over 2 bins (log 2 nats) that spreads over 4 (log 4) after randomization: the entropy doubles;
    # constant before and after: no rise; a map that dies (entropy 0): log(floor / 1) far below any tau
    run = RunScores(similarity=[{}, {}], entropy=[np.array([math.log(2), 0.0, 1.0, 1.0]),
                                                  np.array([math.log(4), 0.0, 1.0, 0.0])])
    rise = VARIANTS["emprt"].score(run)["entropy"]
    assert rise[0] == pytest.approx(math.log(2), abs=1e-3) and rise[1] == 0.0 and rise[2] == 0.0
    assert rise[3] == pytest.approx(math.log(ENTROPY_FLOOR / (1 + ENTROPY_FLOOR)))
    assert VARIANTS["emprt"].criterion == "above"


def test_the_noise_control_fails_emprt_and_plain_entropy_ratios_would_be_biased_upwards():
    # two independent draws of |normal| noise maps per image, as the random_noise control gives at stages 0 and 1
    rng = np.random.default_rng(0)
    before, after = (discrete_entropy(np.clip(np.abs(rng.normal(size=(60, 28, 28))) / 3, 0, 1), 100)
                     for _ in range(2))
    rise = VARIANTS["emprt"].score(RunScores([{}, {}], [before, after]))["entropy"]
    scores = pd.DataFrame(dict(method="random_noise", baseline="none", variant="emprt", setting="paper",
                               metric="entropy", seed=0, image=np.arange(60), value=rise))
    table = verdict_table(scores, criteria={"emprt": "above"}, tau={"entropy": 0.05}, reference="paper")
    assert table["verdict"].iloc[0] == "fail" and abs(table["score"].iloc[0]) < 0.02


def test_mprt_reads_the_last_stage_and_mprt_curve_the_mean_over_the_randomized_stages():
    stages = [{"ssim": np.array([1.0, 1.0])}, {"ssim": np.array([0.8, 0.6])}, {"ssim": np.array([0.2, 0.0])}]
    run = RunScores(stages, [None] * 3)
    assert VARIANTS["mprt"].score(run)["ssim"].tolist() == [0.2, 0.0]
    assert VARIANTS["mprt_curve"].score(run)["ssim"].tolist() == pytest.approx([0.5, 0.3])
    assert VARIANTS["mprt_curve"].needs_curve and not VARIANTS["random_logit"].protocol_dependent


# --------------------------------------------------------------------------- sMPRT's noise average


def test_noise_average_draws_the_same_copies_for_a_seed_and_reduces_to_their_mean():
    x = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    average = NoiseAverage(n_samples=4, noise_level=0.2)
    copies = average.copies(x, seed=7)
    assert copies.shape == (12, 1, 5, 5)
    assert torch.equal(copies, average.copies(x, seed=7)) and not torch.equal(copies, average.copies(x, seed=8))
    spread = (copies.view(3, 4, -1) - x.view(3, 1, -1)).std()
    assert 0.1 * 0.2 < spread < 2 * 0.2  # noise of 0.2 x each image's range (about 1)
    assert torch.allclose(average.reduce(copies), copies.view(3, 4, 1, 5, 5).mean(1))
    assert torch.equal(average.copies(x[1:], seed=7, first=1), copies[4:])  # a chunk gets the whole batch's copies
    assert NoiseAverage(4, 0.2, images_per_call=8).chunks(5) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert torch.equal(NoiseAverage(2, 0.0).reduce(NoiseAverage(2, 0.0).copies(x, 0)), x)
    with pytest.raises(ValueError, match="smprt needs n_samples >= 1"):
        NoiseAverage(0, 0.1)


# --------------------------------------------------------------------------- the full mode and the sweep


def test_the_full_mode_gives_the_cascades_last_stage_weights():
    model = build_model("cnn", seed=0)
    inputs = ModeInputs(seed=3, law=LawSpec.parse("permute"))
    *_, last = mode_spec("cascading").stages(model, inputs)
    stages = list(mode_spec("full").stages(model, inputs))
    assert [s.name for s in stages] == mode_spec("full").stage_names(model, inputs)
    assert stages[0].model is model
    for a, b in zip(stages[1].model.state_dict().values(), last.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(fully_randomized(model, 3, inputs.law).logits.weight, last.model.logits.weight)


def test_a_sweep_shares_stage_0_and_keeps_each_settings_stage_indices():
    model = build_model("cnn", seed=0)
    base = Settings.from_config({"randomization": {"n_images": 2}})
    settings = [ProtocolSetting.parse("paper", {}, base), ProtocolSetting.parse("permute", {"law": "permute"}, base)]
    sweep = Sweep(model, settings, "cascading", seed=0)
    stages = list(sweep.stages())
    # stage k of each setting keeps index k: the methods' noise at stage k is the same for both settings
    assert [s.index for s in stages] == [0, 1, 2, 3, 4, 1, 2, 3, 4]
    assert sweep.segments == ["paper"] * 4 + ["permute"] * 4
    assert stages[0].name == "paper:original" and stages[5].name == "permute:logits"


def test_a_sweeps_scores_give_each_setting_stage_0_then_its_own_stages():
    model = build_model("cnn", seed=0)
    base = Settings.from_config({})
    settings = [ProtocolSetting.parse("a", {}, base), ProtocolSetting.parse("b", {"law": "permute"}, base)]
    sweep = Sweep(model, settings, "full", seed=0)
    series = ("gradient", "none")
    result = RunResult([series], stages=["a:original", "a:fully_randomized", "b:fully_randomized"],
                       scores=[{series: {"ssim": [1.0]}}, {series: {"ssim": [0.3]}}, {series: {"ssim": [0.7]}}],
                       entropy=[{series: np.array([2.0])}, {series: np.array([2.5])}, {series: np.array([1.0])}])
    scores = sweep.scores(result)
    assert [s["ssim"].tolist() for s in scores["b", series].similarity] == [[1.0], [0.7]]
    assert [h.tolist() for h in scores["a", series].entropy] == [[2.0], [2.5]]
    probe = ActivationScale(["logits"])
    probe.rms = [np.array([1.0]), np.array([2.0]), np.array([3.0])]
    assert activation_rows(probe, sweep, settings)[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_a_setting_that_changes_nothing_for_a_model_is_moot_and_an_unknown_axis_is_named():
    base = Settings.from_config({"randomization": {"n_images": 2}})
    paper = ProtocolSetting.parse("paper", {}, base)
    cnn = build_model("cnn", seed=0)
    assert "one module" in ProtocolSetting.parse("modules", {"granularity": "modules"}, base).moot_for(cnn, paper)
    assert "no BatchNorm" in ProtocolSetting.parse("bn", {"batchnorm": "reset"}, base).moot_for(cnn, paper)
    assert ProtocolSetting.parse("permute", {"law": "permute"}, base).moot_for(cnn, paper) is None
    bottom_up = ProtocolSetting.parse("bottom_up", {"order": "bottom_up"}, base)
    assert bottom_up.moot_for(cnn, paper, reads_curve=True) is None  # mprt_curve reads the order
    assert "curve" in bottom_up.moot_for(cnn, paper, reads_curve=False)  # the fully randomized model alone: a re-draw
    with pytest.raises(ValueError, match=r"protocols.settings.odd sets \['depth'\]"):
        ProtocolSetting.parse("odd", {"depth": 2}, base)
    with pytest.raises(ValueError, match="protocols.settings.odd.order"):
        ProtocolSetting.parse("odd", {"order": "sideways"}, base)


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("low, high, criterion, expected", [
    (0.1, 0.4, "below", "pass"), (0.4, 0.6, "below", "unclear"), (0.5, 0.9, "below", "fail"),
    (1.1, 1.3, "above", "pass"), (0.9, 1.1, "above", "unclear"), (0.7, 1.0, "above", "fail"),
    (np.nan, np.nan, "below", "unclear"),
])
def test_a_verdict_needs_the_whole_ci_on_one_side_of_tau(low, high, criterion, expected):
    assert verdict(low, high, 0.5 if criterion == "below" else 1.0, criterion) == expected


def _scores(values: dict[tuple[str, str], float], images: int = 30, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [dict(method=m, baseline="none", variant="mprt", setting=s, metric="ssim", seed=k, image=i,
                 value=v + 0.01 * rng.normal()) for (m, s), v in values.items() for k in range(seeds)
            for i in range(images)]
    return pd.DataFrame(rows)


def test_the_verdict_table_marks_a_setting_that_flips_the_reference_verdict():
    scores = _scores({("gradient", "paper"): 0.1, ("gradient", "permute"): 0.1,
                      ("guided_backprop", "paper"): 0.3, ("guided_backprop", "permute"): 0.9})
    table = verdict_table(scores, criteria={"mprt": "below"}, tau={"ssim": 0.5}, reference="paper", n_boot=200)
    assert list(table.columns) == list(VERDICT_COLUMNS)
    cells = table.set_index(["method", "setting"])
    assert cells.loc[("gradient", "permute"), "verdict"] == "pass" and not cells.loc[("gradient", "permute"), "flipped"]
    assert cells.loc[("guided_backprop", "permute"), ["reference_verdict", "verdict"]].tolist() == ["pass", "fail"]
    assert cells.loc[("guided_backprop", "permute"), "flipped"]
    assert cells["score"].to_numpy() == pytest.approx([0.1, 0.1, 0.3, 0.9], abs=0.01)
    assert (cells["n_images"] == 30).all() and (cells["n_seeds"] == 3).all()
    assert (cells["ci_low"] < cells["score"]).all() and (cells["score"] < cells["ci_high"]).all()
    with pytest.raises(ValueError, match=r"no threshold tau for metric\(s\) \['ssim'\]"):
        verdict_table(scores, criteria={"mprt": "below"}, tau={}, reference="paper")


def test_the_seeds_agreement_is_high_when_each_image_keeps_its_score_across_seeds():
    rng = np.random.default_rng(1)
    image_effect = rng.normal(0, 1, 40)
    rows = [dict(method="m", baseline="none", variant="mprt", setting="paper", metric="ssim", seed=k, image=i,
                 value=image_effect[i] + noise * rng.normal()) for noise, k in
            [(0.05, 0), (0.05, 1), (0.05, 2)] for i in range(40)]
    steady = verdict_table(pd.DataFrame(rows), criteria={"mprt": "below"}, tau={"ssim": 0.5}, reference="paper")
    assert steady["reliability"].iloc[0] > 0.95
    for row in rows:  # every value drawn afresh: the seeds no longer agree on which image scores high
        row["value"] = rng.normal()
    noisy = verdict_table(pd.DataFrame(rows), criteria={"mprt": "below"}, tau={"ssim": 0.5}, reference="paper")
    assert abs(noisy["reliability"].iloc[0]) < 0.2


@pytest.mark.parametrize("section, message", [
    ({"settings": {"paper": {}, "odd": {"law": "shuffle"}}}, "protocols.settings.odd.law"),
    ({"settings": {"paper": None, "permute": {"law": "permute"}}}, r"reference is 'paper', not one of the settings \['permute'\]"),
    ({"variants": ["mprt", "xmprt"]}, "protocols.variants"),
    ({"smprt": {"samples": 3}}, "protocols.smprt takes n_samples and noise_level"),
    ({"tau": {"ssim": 0.5, "sim": 0.1}}, r"protocols.tau names \['sim'\]"),
    ({"seeds": 0}, "protocols.seeds"),
])
def test_check_names_refuses_a_bad_protocols_section_before_any_job_runs(section, message):
    config = resolve_config("smoke", workflow_dir=Path(__file__).parents[1] / "workflow")
    config["evaluations"]["protocols"] = {**config["evaluations"]["protocols"], **section}
    with pytest.raises(ValueError, match=message):
        check_names(config)
