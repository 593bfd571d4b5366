"""The README's "Extending" examples, as written: each registers a toy entry (a dataset, a model, a
baseline, a metric, a randomization mode, an evaluation) inside the test, with no edit to any other file, and runs
it through the harness and the randomization runner into tidy CSV rows and a figure's inputs."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_sanity import similarity
from saliency_sanity.baselines import BASELINES
from saliency_sanity.contracts import SIMILARITY_COLUMNS
from saliency_sanity.data import DATASETS, DataSource, load_examples
from saliency_sanity.contracts import EVALUATION_IDENTITY, evaluation_csv
from saliency_sanity.evaluation import EVALUATIONS, run_evaluation
from saliency_sanity.figures import load_maps, load_similarity
from saliency_sanity.figures.inputs import load_evaluation
from saliency_sanity.harness import Harness
from saliency_sanity.methods import METHODS, get_method
from saliency_sanity.models import MODELS, build_model, save_checkpoint
from saliency_sanity.randomization import LAWS, MODES, VARIANTS, run_randomization_test

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = (METHODS, DATASETS, MODELS, BASELINES, similarity.METRICS, MODES, LAWS, EVALUATIONS, VARIANTS)
CHEAP = {"integrated_gradients": {"steps": 4}, "ig_smoothgrad": {"steps": 2, "n_samples": 2},
         **{name: {"n_samples": 3} for name in ("smoothgrad", "smoothgrad_squared", "vargrad")}}


def readme_example(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.fixture
def register():
    """Run README examples; every registry is restored after the test."""
    with ExitStack() as stack:
        for registry in REGISTRIES:
            stack.enter_context(registry.isolated(keep=tuple(registry)))

        def run(*headings: str) -> None:
            for heading in headings:
                exec(compile(readme_example(heading), "README.md", "exec"), {})

        yield run


def tiny_cnn_methods() -> set[str]:
    """The default methods that apply to the README's tiny CNN (it has a Grad-CAM layer, not a CAM head)."""
    return {method.name for method in Harness().applicable(build_model("tiny_cnn", seed=0))}


def run_test(tmp_path: Path, mode: str = "cascading", methods: dict | None = None, n_images: int = 4, **randomization):
    """The toy model (untrained) on the toy dataset through the runner; the figure inputs it writes."""
    path = tmp_path / "models" / "stripes-tiny_cnn.pt"
    save_checkpoint(build_model("tiny_cnn", seed=0), path, {"dataset": "stripes", "arch": "tiny_cnn"})
    config = {"seed": 0, "randomization": {"n_images": n_images, "explain": "predicted", "batch_size": 64, **randomization},
              "methods": CHEAP if methods is None else methods, "similarity": {"hog_pixels_per_cell": 4}}
    csv, npz = tmp_path / f"{mode}.csv", tmp_path / f"{mode}.npz"
    table = run_randomization_test(path, mode, config, csv, npz, device="cpu")
    return table, load_similarity(csv), load_maps(npz)


def test_readme_method_example_registers_a_working_method(register, shipped_models, images):
    register("Adding a method")
    model, target = shipped_models["cnn"], torch.zeros(len(images), dtype=torch.long)
    maps = get_method("gradient_x_sign")(model, images, target, batch_size=2)
    # batches of 2 against one batch of 3: equal up to float rounding, which differs by CPU
    torch.testing.assert_close(maps, get_method("gradient")(model, images, target) * torch.sign(images))
    assert "gradient_x_sign" in [method.name for method in Harness().applicable(model)]  # picked up everywhere


def test_a_dataset_and_a_model_added_by_the_readme_run_every_method(register, tmp_path):
    register("Adding a dataset", "Adding a model")
    examples = load_examples("stripes", "test", DataSource(n=5))
    assert examples.images.shape == (5, 1, 16, 16) and set(examples.labels.tolist()) <= {0, 1}
    table, csv, maps = run_test(tmp_path)
    assert list(csv.columns) == list(SIMILARITY_COLUMNS) and set(csv.dataset) == {"stripes"}
    stages = ["original", "logits", "conv"]
    assert maps.stages == stages and maps.dataset == "stripes" and maps.model == "stripes-tiny_cnn"
    assert set(table.method) == tiny_cnn_methods() and set(table.metric) == set(similarity.METRICS)
    assert len(table) == 4 * len(tiny_cnn_methods()) * len(stages) * len(similarity.METRICS)
    assert np.allclose(table[table.stage == "original"].value, 1.0)  # every map equals itself at stage 0


def test_a_baseline_added_by_the_readme_is_what_ig_integrates_from(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding a baseline")
    model = build_model("tiny_cnn", seed=0).eval()
    x = load_examples("stripes", "test", DataSource(n=3)).images
    target = torch.tensor([0, 1, 0])
    maps = Harness({"integrated_gradients": {"steps": 20, "baseline": "mid_grey"}},
                   methods=["integrated_gradients"]).explain(model, x, target)["integrated_gradients"]
    with torch.no_grad():
        delta = model(x).gather(1, target[:, None]) - model(torch.full_like(x, 0.5)).gather(1, target[:, None])
    # completeness against the mid-grey baseline (a ReLU network: a Riemann sum is close, not exact)
    torch.testing.assert_close(maps.flatten(1).sum(1), delta.squeeze(1), rtol=0.05, atol=1e-3)
    table, csv, _ = run_test(tmp_path, methods={"integrated_gradients": {"steps": 4, "baseline": "mid_grey"}})
    assert set(csv.method) >= {"integrated_gradients"}


def test_a_metric_added_by_the_readme_gets_its_rows(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding a similarity metric")
    table, csv, _ = run_test(tmp_path, methods={"gradient": {}, "sobel": {}})
    overlap = csv[csv.metric == "top10_overlap"]
    assert len(overlap) == 4 * len(tiny_cnn_methods()) * 3
    assert np.allclose(overlap[overlap.stage == "original"].value, 1.0)
    assert overlap.value.between(0, 1).all()
    edges = overlap[overlap.method == "sobel"]
    assert np.allclose(edges.value, 1.0)  # a model-free control does not change with the model


def test_a_mode_added_by_the_readme_explains_noisy_inputs(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding a randomization mode")
    table, csv, maps = run_test(tmp_path, mode="input_noise", methods={"gradient": {}, "sobel": {}}, n_images=6)
    assert maps.stages == ["original", "input_noise"] and set(csv["mode"]) == {"input_noise"}
    edges = csv[(csv.stage == "input_noise") & (csv.metric == "spearman_abs") & (csv.method == "sobel")]
    assert len(edges) == 6 and (edges.value < 1 - 1e-6).all()  # the noise reaches the inputs the maps are made of


def test_the_random_logit_mode_explains_another_class_with_the_same_model(register, tmp_path):
    register("Adding a dataset", "Adding a model")
    table, csv, maps = run_test(tmp_path, mode="random_logit", methods={"gradient": {}}, n_images=6)
    assert maps.stages == ["original", "random_logit"] and set(csv["mode"]) == {"random_logit"}
    assert (maps.targets[1] != maps.predictions[1]).all() and np.array_equal(maps.targets[0], maps.predictions[0])
    assert np.array_equal(maps.predictions[0], maps.predictions[1])  # the same model at both stages


def test_a_law_added_by_the_readme_randomizes_the_blocks_by_it(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding a re-initialization law")
    model = build_model("tiny_cnn", seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    LAWS.get_entry("sign_flip").fn(model, torch.Generator().manual_seed(0), fraction=1.0)
    assert all(torch.equal(p, -before[name]) for name, p in model.named_parameters())  # every sign flipped
    _, csv, maps = run_test(tmp_path, methods={"gradient": {}}, law={"name": "sign_flip", "fraction": 0.5})
    assert maps.stages[0] == "original" and len(maps.stages) == 1 + len(model.block_names)
    spearman = csv[(csv.metric == "spearman_abs") & (csv.stage != "original")]
    assert len(spearman) and (spearman.value < 1 - 1e-6).any()  # the flipped weights change the maps


def test_a_variant_added_by_the_readme_gets_its_cells_in_the_verdict_matrix(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding a sanity-check variant")
    path = tmp_path / "models" / "stripes-tiny_cnn.pt"
    save_checkpoint(build_model("tiny_cnn", seed=0), path, {"dataset": "stripes", "arch": "tiny_cnn"})
    config = {"seed": 0, "methods": {"gradient": {}, "random_noise": {}}, "similarity": {"hog_pixels_per_cell": 4},
              "evaluation": {"n_images": 4, "seeds": 2, "variants": ["mprt", "mprt_top"], "n_boot": 100,
                             "settings": {"paper": {}, "permute": {"law": "permute"}}}}
    out = evaluation_csv("stripes-tiny_cnn", "protocols", tmp_path)
    run_evaluation("protocols", path, config, out, device="cpu")
    csv = load_evaluation(out, "protocols")
    top = csv[csv.variant == "mprt_top"]
    assert set(top.setting) == {"paper", "permute"} and set(top.method) >= {"gradient", "random_noise"}
    assert set(top.metric) == set(similarity.METRICS) and (top.n_seeds == 2).all()
    assert top.verdict.isin(["pass", "unclear", "fail"]).all()


def test_an_evaluation_added_by_the_readme_writes_its_csv_contract(register, tmp_path):
    register("Adding a dataset", "Adding a model", "Adding an evaluation")
    path = tmp_path / "models" / "stripes-tiny_cnn.pt"
    save_checkpoint(build_model("tiny_cnn", seed=0), path, {"dataset": "stripes", "arch": "tiny_cnn"})
    config = {"seed": 0, "methods": CHEAP, "evaluation": {"n_images": 3, "share": 0.25}}
    out = evaluation_csv("stripes-tiny_cnn", "map_mass", tmp_path)
    table = run_evaluation("map_mass", path, config, out, device="cpu")
    csv = load_evaluation(out, "map_mass")  # what a figure with input key eval_map_mass_csv reads
    assert list(csv.columns) == list(EVALUATION_IDENTITY) + ["method", "baseline", "image", "top_fraction"]
    assert len(csv) == len(table) == 3 * len(tiny_cnn_methods())
    assert csv.top_fraction.between(0.25 - 1e-6, 1 + 1e-6).all()  # the top quarter holds at least a quarter
