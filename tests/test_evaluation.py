"""The evaluations (saliency_sanity.evaluation): every registered one through the runner into its CSV
contract and its figures; the ablation tests against hand-computed curves; adaptive IG's passes;
every method with every baseline through the harness; the config and the workflow's jobs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from saliency_sanity.config import ConfigError, evaluation_settings, resolve_config, training_settings
from saliency_sanity.contracts import (
    EVALUATION_IDENTITY,
    NO_BASELINE,
    evaluation_csv,
    evaluation_npz,
    figure_input_path,
)
from saliency_sanity.data import DATASETS, Examples, register_dataset
from saliency_sanity.data.decoy import SHORTCUTS
from saliency_sanity.evaluation import EVALUATIONS, run_evaluation
from saliency_sanity.evaluation.ablation import ablation_table, fill_values, mass_center_masks, top_k_masks
from saliency_sanity.evaluation.class_conversion import ScoredMethod, convert, erasure_masks, log_odds
from saliency_sanity.evaluation.convergence import adaptive_table
from saliency_sanity.figures import FIGURES, figures_for, make_figure
from saliency_sanity.figures.evaluation_plots import passes_to_reach, target_error
from saliency_sanity.harness import Harness
from saliency_sanity.methods import METHODS
from saliency_sanity.methods.gradients import integrated_gradients, locally_refined_integrated_gradients
from saliency_sanity.models import build_model, save_checkpoint
from saliency_sanity.names import check_names, evaluation_jobs

CHEAP_METHODS = {"integrated_gradients": {"steps": 4}, "ig_smoothgrad": {"steps": 2, "n_samples": 2},
                 **{name: {"n_samples": 2} for name in ("smoothgrad", "smoothgrad_squared", "vargrad")}}
CHEAP = {  # each registered evaluation's cheapest settings; a new one runs with its defaults
    "convergence": {"rules": ["right", "gauss_legendre"], "steps": [2, 4], "tolerances": [0.5], "baselines": ["uniform"],
                    "adaptive": {"midpoint": {"steps": 2}, "local": {"steps": 2}}, "reference_steps": 8},
    "path_outputs": {"points": 5, "baselines": ["training"]},
    "ablation": {"fractions": [0.5, 1.0], "baselines": ["uniform", "training"]},
    "shortcut": {"baselines": ["max_distance"]},
    "class_conversion": {"per_task": 2, "erased": 20, "methods": [
        "gradient_x_input", "deeplift_revealcancel", {"method": "gradient", "label": "|gradient|", "transform": "absolute"},
        {"method": "integrated_gradients", "label": "IG (2 steps)", "steps": 2}]},
    "protocols": {"seeds": 2, "settings": {"paper": {}, "permute": {"law": "permute"}, "modules": {"granularity": "modules"}},
                  "variants": ["mprt", "mprt_curve", "emprt", "smprt", "random_logit"], "smprt": {"n_samples": 2},
                  "n_boot": 100},
}


def present_classes(name: str, labels: torch.Tensor) -> dict:
    """Settings that depend on the fake test set's labels: class conversion's task starts from a class it has."""
    if name != "class_conversion":
        return {}
    source = int(labels[0])
    return {"tasks": [[source, (source + 1) % 10]]}


# --------------------------------------------------------------------------- every evaluation, end to end


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained MNIST CNN on a fake MNIST whose labels are its own predictions (so every image is
    correctly classified, as the ablation needs)."""
    model = build_model("cnn", seed=0).eval()
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(1)
    path = tmp_path_factory.mktemp("models") / "mnist-cnn.pt"
    save_checkpoint(model, path, {"dataset": "mnist", "arch": "cnn"})
    return path, Examples(images, labels)


@pytest.fixture
def fake_mnist(checkpoint):
    with DATASETS.isolated(keep=tuple(SHORTCUTS)):
        @register_dataset("mnist", num_classes=10)
        def fake(split, source):
            test = checkpoint[1]
            if split == "test":
                return test
            return Examples(test.images.repeat(200, 1, 1, 1), test.labels.repeat(200))  # the 1,000 draws

        yield checkpoint[0]


def _settings(name: str, **section) -> dict:
    return {"seed": 0, "device": "cpu", "randomization": {"batch_size": 64}, "methods": CHEAP_METHODS,
            "evaluation": {"n_images": 3, **CHEAP.get(name, {}), **section}}


@pytest.mark.parametrize("name", EVALUATIONS.names())
def test_every_evaluation_writes_its_csv_contract_and_renders_its_figures(name, checkpoint, fake_mnist, tmp_path):
    labels = checkpoint[1].labels
    checkpoint, datasets = fake_mnist, EVALUATIONS[name].datasets
    if datasets is not None:  # the same model, recorded as trained on a dataset the evaluation applies to
        checkpoint = tmp_path / f"{datasets[0]}-cnn.pt"
        save_checkpoint(build_model("cnn", seed=0), checkpoint, {"dataset": datasets[0], "arch": "cnn"})
    model = checkpoint.stem
    out = evaluation_csv(model, name, tmp_path)
    table = run_evaluation(name, checkpoint, _settings(name, **present_classes(name, labels)), out, device="cpu")
    csv = pd.read_csv(out)
    assert list(csv.columns) == list(EVALUATION_IDENTITY) + list(EVALUATIONS[name].columns)
    assert len(csv) == len(table) > 0 and set(csv.evaluation) == {name} and set(csv.model) == {model}
    if "baseline" in csv.columns and "baselines" in CHEAP.get(name, {}):
        assert set(CHEAP[name]["baselines"]) <= set(csv.baseline)  # each listed baseline has its rows
    with np.load(evaluation_npz(model, name, tmp_path)) as archive:  # beside the CSV: identity and what it kept
        assert {str(archive[key]) for key in EVALUATION_IDENTITY} == {csv.dataset[0], model, name}
    for figure in figures_for([], [name]):  # the figures that read it, if any
        inputs = {key: figure_input_path(key, model, tmp_path) for key in FIGURES[figure].inputs}
        paths = make_figure(figure, model, inputs, tmp_path / "figures", preset="test")
        assert all(p.is_file() for p in paths)


def test_an_unknown_evaluation_parameter_names_its_config_key(fake_mnist, tmp_path):
    with pytest.raises(ValueError, match=r"evaluations.ablation has unknown parameter\(s\) \['fraction'\]"):
        run_evaluation("ablation", fake_mnist, _settings("ablation", fraction=[0.5]), tmp_path / "a.csv", device="cpu")
    assert not (tmp_path / "a.csv").exists()


def test_ablation_keeps_only_correctly_classified_images(checkpoint, tmp_path):
    path, examples = checkpoint
    flipped = examples.labels.clone()
    flipped[:2] = (flipped[:2] + 1) % 10  # images 0 and 1 now misclassified
    with DATASETS.isolated():
        register_dataset("mnist", num_classes=10)(lambda split, source: Examples(examples.images, flipped))
        table = run_evaluation("ablation", path, _settings("ablation", n_images=4, baselines=[]),
                               tmp_path / "a.csv", device="cpu")
    assert set(table.image) == {2, 3}


# --------------------------------------------------------------------------- ablation by hand


class Weighted(nn.Module):
    """Two logits: w . x and 0."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    def forward(self, x):
        first = (x * self.w).flatten(1).sum(1, keepdim=True)
        return torch.cat([first, torch.zeros_like(first)], dim=1)


def test_top_k_ablation_of_a_known_map_gives_the_hand_computed_curve():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # mean 2.5
    model = Weighted(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # f = x00 + 2 x11 = 9
    maps = torch.tensor([[[[0.0, 1.0], [3.0, 2.0]]]])  # ranks: x10 (3), x11 (2), x01 (1), x00 (0)
    table = ablation_table(model, x, torch.tensor([0]), maps, fractions=[0.25, 0.5, 0.75, 1.0],
                           fills={"mean": fill_values(x, "mean", 1.0)}, tests=["top_k"])
    # x10 is weightless: 9; then x11 -> 2.5: 1 + 5 = 6; x01 weightless: 6; x00 -> 2.5: 2.5 + 5 = 7.5
    assert table.logit.tolist() == pytest.approx([9.0, 6.0, 6.0, 7.5])
    assert (table.original_logit == 9.0).all() and table.fraction.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_mass_center_box_sits_on_the_centre_of_mass_inside_the_image():
    scores = torch.zeros(2, 6, 6)
    scores[0, 5, 5] = 1.0  # mass in the bottom-right corner: the box is pushed inside
    scores[1, 2, 1] = scores[1, 2, 3] = 1.0  # centre (2, 2)
    masks = mass_center_masks(scores, [1 / 9, 0.25])
    corner, centre = masks[0], masks[1]
    assert corner[0].sum() == 4 and corner[0, 4:, 4:].all()  # round(6 / 3) = 2: a 2 x 2 box in the corner
    assert corner[1].sum() == 9 and corner[1, 3:, 3:].all()
    assert centre[1].sum() == 9 and centre[1, 1:4, 1:4].all()  # 3 x 3 around (2, 2)
    empty = mass_center_masks(torch.zeros(1, 6, 6), [0.25])  # no positive mass: the image centre
    assert empty[0, 0].sum() == 9 and empty[0, 0, 2:5, 2:5].all()  # centre 2.5: round(1.5) = 2 (half to even)


def test_shortcut_measures_accuracy_per_condition_and_mass_on_the_patch(checkpoint, tmp_path):
    """A model that reads only the decoy patch: right with the true code, at chance with a random one, and
    class 0 without one; a map that is the input's gradient puts all its mass on the patch."""

    class PatchReader(nn.Module):
        def forward(self, x):  # logit c = (k + 1)(c + 1) - (c + 1)^2 / 2, largest at c = k = 9 * patch mean
            code = 9 * x[:, 0, :3, :3].mean((1, 2)).unsqueeze(1) + 1
            classes = torch.arange(1.0, 11.0)
            return code * classes - classes**2 / 2

    path = tmp_path / "decoy-mnist-cnn.pt"
    save_checkpoint(build_model("cnn", seed=0), path, {"dataset": "decoy-mnist", "arch": "cnn"})
    labels = torch.arange(10).repeat(3)
    images = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    images[:, :, :3, :3] = 0  # MNIST's corners are black
    with DATASETS.isolated(keep=tuple(SHORTCUTS)):
        register_dataset("mnist", num_classes=10)(lambda split, source: Examples(images, labels))
        from saliency_sanity.evaluation import shortcut as module

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("saliency_sanity.jobs.load_checkpoint", lambda p, device: PatchReader())
            table = run_evaluation("shortcut", path, _settings("shortcut", n_images=30, baselines=[]),
                                   tmp_path / "s.csv", device="cpu")
    assert module.CONDITIONS == ("true_code", "random_code", "no_code")
    accuracy = table[table.measure == "correct"].groupby("condition").value.mean()
    assert accuracy["true_code"] == 1.0 and accuracy["no_code"] == pytest.approx(0.1)  # class 0 only
    assert accuracy["random_code"] < 0.5
    mass = table[table.measure == "mass_on_shortcut"].groupby("method").value.mean()
    assert mass["gradient"] == pytest.approx(1.0) and mass["sobel"] < 0.2
    assert table[table.measure == "area"].value.eq(9 / 784).all()
    with np.load(tmp_path / "s.npz") as kept:  # the maps shown next to the code: the first images, every series
        series = list(zip(kept["methods"].tolist(), kept["baselines"].tolist()))
        assert series == list(dict.fromkeys(zip(table.method[table.measure == "mass_on_shortcut"],
                                                 table.baseline[table.measure == "mass_on_shortcut"])))
        assert kept["maps"].shape == (len(series), module.SHOWN_IMAGES, 28, 28) and kept["mask"][:, :3, :3].all()
        assert kept["mask"].sum() == 9 * module.SHOWN_IMAGES
        gradient = kept["maps"][series.index(("gradient", "none"))].astype(np.float32)
        assert gradient.max() == 1.0 and not gradient[:, 3:, :].any() and not gradient[:, :, 3:].any()


def test_top_k_masks_count_pixels_and_break_ties_by_position():
    masks = top_k_masks(torch.zeros(1, 2, 5), [0.2, 0.5, 1.0])
    assert masks.sum((2, 3)).tolist() == [[2, 5, 10]]
    assert masks[0, 0].flatten().tolist()[:2] == [True, True]  # equal scores: the first pixels first


# --------------------------------------------------------------------------- adaptive IG's passes


def test_adaptive_table_meets_each_tolerance_or_spends_the_maximum(shipped_models, images):
    model = shipped_models["cnn"]
    target = model(images).argmax(1)
    table = adaptive_table(model, images, target, torch.zeros_like(images), rule="midpoint", steps=2,
                           tolerances=[0.1, 0.02], max_steps=54)
    assert set(table.passes) <= {2, 6, 18, 54}  # the midpoint rule's nested grids
    met = table[table.passes < 54]
    assert (met.error <= met.tolerance).all()
    tight, loose = (table[table.tolerance == t].set_index("image").passes for t in (0.02, 0.1))
    assert (tight >= loose).all()


class Kinked(nn.Module):
    """f(x) = sum relu(x - 0.3): on a zero baseline and x = 0.7 the path integrand jumps once, at alpha = 3/7."""

    def forward(self, x):
        return torch.relu(x - 0.3).flatten(1).sum(1, keepdim=True)


def test_local_refinement_halves_the_interval_with_the_jump_until_complete():
    x, target = torch.full((1, 1, 1, 3), 0.7, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    maps, counts = locally_refined_integrated_gradients(Kinked(), x, target, steps=2, tolerance=1e-3, max_steps=400,
                                                        per_round=1)
    # each halving of the one interval holding 3/7 about halves the error: from 0.125 (2 points) to under 1e-3
    # in 9 halvings (11 points), where a uniform trapezoid is still at 0.7 % with 120 points
    assert counts.item() <= 12
    assert relative_completeness_error(maps, x) <= 1e-3
    uniform = integrated_gradients(Kinked(), x, target, steps=12, rule="trapezoid")
    assert relative_completeness_error(uniform, x) > 1e-2


def relative_completeness_error(maps: torch.Tensor, x: torch.Tensor) -> float:
    return abs(maps.sum().item() - 1.2) / 1.2  # f(x) - f(0) = 3 * 0.4


def test_local_refinement_equals_the_fixed_trapezoid_where_it_need_not_refine(shipped_models, images):
    model, target = shipped_models["cnn"], torch.zeros(len(images), dtype=torch.long)
    maps, counts = locally_refined_integrated_gradients(model, images, target, steps=9, tolerance=10.0)
    assert (counts == 9).all()
    torch.testing.assert_close(maps, integrated_gradients(model, images, target, steps=9, rule="trapezoid"))
    with pytest.raises(ValueError, match="refine='local' refines the trapezoid"):
        integrated_gradients(model, images, target, rule="midpoint", refine="local", tolerance=0.1)


def test_convergence_facts_find_the_reference_and_the_passes_to_reach_it():
    rows = [("right", 50, np.nan, i, 50, e, 2 * e) for i, e in enumerate([0.01, 0.02, 0.03])]
    rows += [("gauss_legendre", s, np.nan, i, s, e, e) for s, e in ((8, 0.05), (16, 0.015)) for i in range(3)]
    rows += [("adaptive-midpoint", 4, t, i, p, e, e) for t, p, e in ((0.05, 5, 0.04), (0.02, 12, 0.01)) for i in range(3)]
    table = pd.DataFrame(rows, columns=["rule", "steps", "tolerance", "image", "passes", "error", "map_error"])
    assert target_error(table) == pytest.approx(0.02) and target_error(table, "map_error") == pytest.approx(0.04)
    assert passes_to_reach(table, 0.02) == {"right": 50, "gauss_legendre": 16, "adaptive-midpoint": 12}
    assert passes_to_reach(table, 0.04, "map_error") == {"right": 50, "gauss_legendre": 16, "adaptive-midpoint": 5}


# --------------------------------------------------------------------------- every method with every baseline


def test_harness_runs_each_path_method_once_per_baseline(shipped_models, images):
    harness = Harness({"integrated_gradients": {"steps": 4}, "deeplift_rescale": {}, "gradient": {}},
                      methods=["integrated_gradients", "deeplift_rescale", "gradient"])
    model = shipped_models["cnn"]
    target = torch.zeros(len(images), dtype=torch.long)
    runs = [(m, b) for m, b, _ in harness.iter_explain_baselines(model, images, target, ["zero", "max_distance",
                                                                                         {"name": "blurred", "sigma": 2}])]
    assert runs == [("integrated_gradients", "zero"), ("deeplift_rescale", "zero"), ("gradient", NO_BASELINE),
                    ("integrated_gradients", "max_distance"), ("deeplift_rescale", "max_distance"),
                    ("integrated_gradients", "blurred(sigma=2)"), ("deeplift_rescale", "blurred(sigma=2)")]
    maps = {(m, b): v for m, b, v in harness.iter_explain_baselines(model, images, target, ["max_distance"])}
    expected = Harness({"integrated_gradients": {"steps": 4, "baseline": "max_distance"}},
                       methods=["integrated_gradients"]).explain(model, images, target)["integrated_gradients"]
    torch.testing.assert_close(maps[("integrated_gradients", "max_distance")], expected)


# --------------------------------------------------------------------------- config and workflow


def _config(**evaluations) -> dict:
    return {"models": [], "randomization": {"modes": ["cascading"]}, "methods": {"gradient": {}},
            "imagenet": {"enabled": False, "evaluations": {"ablation": {"n_images": None, "blur_sigma": 20}}},
            "seed": 0, "device": "cpu", "similarity": {}, "evaluations": evaluations}


def test_evaluation_settings_put_the_imagenet_section_on_top():
    config = _config(ablation={"models": ["mnist-cnn"], "n_images": 100, "blur_sigma": 4, "fills": ["mean"]})
    config["imagenet"].update(methods={}, similarity={}, labels=None, images=["demo"], n_images=3, models={})
    mnist = evaluation_settings(config, "ablation", "mnist", "cnn")["evaluation"]
    imagenet = evaluation_settings(config, "ablation", "imagenet", "efficientnet_lite0")["evaluation"]
    assert mnist == {"n_images": 100, "blur_sigma": 4, "fills": ["mean"]}
    assert imagenet == {"n_images": None, "blur_sigma": 20, "fills": ["mean"]}


def test_evaluation_jobs_skip_left_out_models_and_name_unknown_ones():
    config = _config(ablation={"models": ["mnist-cnn", "imagenet-inception_v3"]})
    jobs = evaluation_jobs(config, {"mnist-cnn": "mnist"}, left_out=["imagenet-inception_v3"])
    assert jobs == [("ablation", "mnist-cnn")]
    with pytest.raises(ConfigError, match=r"evaluations.ablation.models lists 'mnist-mlp'"):
        evaluation_jobs(_config(ablation={"models": ["mnist-mlp"]}), {"mnist-cnn": "mnist"})


@pytest.mark.parametrize("section, message", [
    ({"nope": {}}, r"unknown evaluation 'nope' \(config key evaluations\)"),
    ({"ablation": {"blur": 3}}, r"evaluations.ablation has unknown parameter\(s\) \['blur'\]"),
    ({"ablation": {"baselines": ["grey"]}}, r"unknown baseline 'grey' \(config key evaluations.ablation.baselines\)"),
])
def test_check_names_catches_bad_evaluation_settings(section, message):
    with pytest.raises(ValueError, match=message):
        check_names(_config(**section))


def test_evaluation_figure_inputs_are_the_evaluation_csvs():
    assert figure_input_path("eval_ablation_csv", "mnist-cnn") == Path("results/evaluation/mnist-cnn-ablation.csv")
    assert figure_input_path("eval_shortcut_maps", "decoy-mnist-cnn") == Path(
        "results/evaluation/decoy-mnist-cnn-shortcut.npz")
    assert set(figures_for([], ["ablation"])) == {"ablation_methods", "ablation_baselines"}
    assert not set(figures_for(["cascading"], [])) & {"ablation_methods", "ig_convergence"}
    assert all(METHODS[m] for m in ("integrated_gradients", "random_noise"))  # what the figures single out


def test_a_models_entry_can_train_with_its_own_settings_and_no_randomization_test():
    config = resolve_config("default", workflow_dir=Path(__file__).resolve().parents[1] / "workflow")
    decoy = next(m for m in config["models"] if m["dataset"] == "decoy-mnist")
    assert decoy["modes"] == [] and "decoy-mnist-cnn" in config["evaluations"]["shortcut"]["models"]
    assert training_settings(config, "decoy-mnist", "cnn")["true_labels"]["cnn"]["epochs"] == 1
    assert training_settings(config, "mnist", "cnn")["true_labels"]["cnn"] == config["training"]["true_labels"]["cnn"]


def test_a_training_job_reads_only_its_own_architecture_and_label_mode():
    """So that one architecture's epochs retrain that architecture only (the job's settings decide its rerun)."""
    config = resolve_config("default", workflow_dir=Path(__file__).resolve().parents[1] / "workflow")
    mlp_true = training_settings(config, "mnist", "mlp")
    assert set(mlp_true["true_labels"]) == {"lr_schedule", "mlp"} and "random_labels" not in mlp_true
    assert mlp_true["batch_size"] == config["training"]["batch_size"]
    mlp_random = training_settings(config, "mnist", "mlp", "random")
    assert set(mlp_random["random_labels"]) == {"init", "train_size", "mlp"} and "true_labels" not in mlp_random
    changed = copy.deepcopy(config)
    changed["training"]["true_labels"]["cnn"]["epochs"] += 1
    changed["training"]["random_labels"]["mlp"]["epochs"] += 1
    assert training_settings(changed, "mnist", "mlp") == mlp_true
    assert training_settings(changed, "mnist", "cnn") != training_settings(config, "mnist", "cnn")
    assert training_settings(changed, "mnist", "mlp", "random") != mlp_random


def test_the_distill_preset_passes_the_name_checks_and_imagenet_draws_no_training_images():
    config = resolve_config("distill", workflow_dir=Path(__file__).resolve().parents[1] / "workflow")
    check_names(config)
    config["imagenet"]["methods"]["expected_gradients"] = {"baseline": "training"}
    with pytest.raises(ConfigError, match="the ImageNet models have none"):
        check_names(config)
    config = resolve_config("distill", workflow_dir=Path(__file__).resolve().parents[1] / "workflow")
    del config["imagenet"]["evaluations"]["ablation"]["baselines"]  # inherits training from evaluations.ablation
    with pytest.raises(ConfigError, match=r"evaluations.ablation.baselines lists \['training'\]"):
        check_names(config)


def test_swapping_the_baseline_drops_the_configured_draws(shipped_models, images):
    harness = Harness({"integrated_gradients": {"steps": 2, "baseline": "uniform", "baseline_draws": 3}},
                      methods=["integrated_gradients"])
    other = harness.with_baseline("max_distance")  # deterministic: three draws would be an error
    assert other.bind(METHODS["integrated_gradients"]).draws == 1
    assert other.baseline_label(METHODS["integrated_gradients"]) == "max_distance"


@pytest.mark.parametrize("name, section, message", [
    ("ablation", {"fractions": [0.0, 0.5]}, r"evaluations.ablation.fractions must list numbers in \(0, 1\]"),
    ("ablation", {"fills": ["noise"]}, r"evaluations.ablation.fills is \['noise'\]"),
    ("convergence", {"rules": ["left"]}, r"evaluations.convergence.rules names \['left'\]"),
    ("convergence", {"adaptive": {"gauss_legendre": {}}}, r"evaluations.convergence.adaptive names \['gauss_legendre'\]"),
])
def test_bad_evaluation_values_name_their_config_key(name, section, message, fake_mnist, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_evaluation(name, fake_mnist, _settings(name, **section), tmp_path / "out.csv", device="cpu")
    assert not (tmp_path / "out.csv").exists()


# --------------------------------------------------------------------------- class conversion


def test_erasure_masks_take_the_top_positive_scores_only():
    scores = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-1.0, -2.0, 4.0, 0.0]])
    assert erasure_masks(scores, 3).tolist() == [[True, False, True, True], [False, False, True, False]]


def test_class_conversion_drops_the_log_odds_by_the_erased_contributions_on_a_linear_model():
    # logit_c = w_c . x + b_c: gradient x input gives S_c = w_c x, so erasing a pixel (to 0) lowers
    # logit_c0 - logit_ct by exactly its (w_c0 - w_ct) x; the |gradient| difference is |w_c0| - |w_ct|
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(2, 1, 4, 4)
    w = model[1].weight.detach().view(3, 4, 4)
    gxi = ScoredMethod("gradient_x_input", "gxi", METHODS.get_entry("gradient_x_input").bind(), None)
    result = convert(model, x, 0, 2, gxi, erased=5, batch_size=None)
    contributions = (w[0] - w[2]) * x[:, 0]
    assert torch.allclose(result.difference, contributions, atol=1e-6)
    top = contributions.flatten(1).sort(1, descending=True).values[:, :5].clamp(min=0)
    assert torch.allclose(log_odds(model, x, 0, 2, None) - result.log_odds_after, top.sum(1), atol=1e-5)
    assert result.erased.flatten(1).sum(1).tolist() == (top > 0).sum(1).tolist()
    absolute = ScoredMethod("gradient", "|gradient|", METHODS.get_entry("gradient").bind(), "absolute")
    difference = convert(model, x, 0, 2, absolute, erased=5, batch_size=None).difference
    assert torch.allclose(difference, (w[0].abs() - w[2].abs()).expand_as(difference), atol=1e-6)


def test_class_conversion_names_a_missing_class_and_a_bad_transform(fake_mnist, checkpoint, tmp_path):
    absent = next(c for c in range(10) if c not in checkpoint[1].labels.tolist())
    path = tmp_path / "mnist-cnn.pt"
    save_checkpoint(build_model("cnn", seed=0), path, {"dataset": "mnist", "arch": "cnn"})
    with pytest.raises(ValueError, match=f"no test image of class {absent}"):
        run_evaluation("class_conversion", path, _settings("class_conversion", tasks=[[absent, 0]]),
                       tmp_path / "c.csv", device="cpu")
    bad = {"methods": [{"method": "gradient", "transform": "square"}]}
    with pytest.raises(ValueError, match="unknown transform 'square'"):
        run_evaluation("class_conversion", path, _settings("class_conversion", **bad), tmp_path / "c.csv", device="cpu")
    assert not (tmp_path / "c.csv").exists()
