"""Theory checks: closed forms vs the registry for the linear and conv-sum models, the analyses'
file contracts, the CLI step and the theory figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_sanity.cli import main
from saliency_sanity.data import write_idx
from saliency_sanity.figures import FIGURES, make_figure
from saliency_sanity.methods import get_method
from saliency_sanity.theory import (
    CONVSUM_FORMS,
    LINEAR_FORMS,
    TOLERANCE,
    ConvSumModel,
    ConvSumSettings,
    LinearModel,
    SignalSpec,
    make_signals,
    relative_error,
)
from saliency_sanity.theory.closed_forms import convsum_gradient, convsum_gradient_limit
from saliency_sanity.theory.convsum import (
    AGREEMENT_COLUMNS,
    FILTER_COLUMNS,
    TRAINING_COLUMNS,
    agreement_rows,
    random_instance,
)
from saliency_sanity.theory.linear import LINEAR_COLUMNS, map_images

CONVSUM = {
    "seeds": [0], "filter_counts": [1, 64], "filter_width": 5, "signal_length": 32, "n_signals": 8,
    "n_train": 200, "n_test": 40, "steps": 30, "batch_size": 32, "lr": 0.05,
    "methods": ["gradient", "guided_backprop", "deconvnet", "gradient_x_input"],
    "agreement_instances": 2, "ig_steps": 4,
}
LINEAR = {"steps": 20, "batch_size": 16, "lr": 0.01, "n_images": 12, "ig_steps": 5}
CONFIG = {"seed": 0, "theory": {"linear": LINEAR, "convsum": CONVSUM, "notes": "tiny"}, "similarity": {}}
FAST = settings(max_examples=20, deadline=None)


def _explain(name: str, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    params = {"steps": 7} if name == "integrated_gradients" else {}
    if name == "smoothgrad":
        params = {"n_samples": 3, "generator": torch.Generator().manual_seed(0)}
    return get_method(name)(model, x, target, **params).numpy()


# ---------------------------------------------------------------- conv-sum closed forms


def _convsum_instance(n_filters, width, channels, extra, batch, zero_prefix, seed):
    model = ConvSumModel(n_filters, width, channels, scale=0.5 + seed % 3).double().eval()
    model.init_block("conv", torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, channels, width + extra, generator=gen, dtype=torch.float64)
    x[..., :zero_prefix] = 0  # windows of zeros: ReLU(0) has derivative 0 in both
    return model, x


@FAST
@given(
    n_filters=st.integers(1, 24), width=st.integers(1, 7), channels=st.integers(1, 2),
    extra=st.integers(0, 20), batch=st.integers(1, 3), zero_prefix=st.integers(0, 10), seed=st.integers(0, 2**16),
)
def test_convsum_registry_matches_closed_forms(n_filters, width, channels, extra, batch, zero_prefix, seed):
    model, x = _convsum_instance(n_filters, width, channels, extra, batch, zero_prefix, seed)
    target = torch.zeros(batch, dtype=torch.long)
    filters, signals, scale = model.filters.detach().numpy(), x.numpy(), float(model.scale)
    for name, form in CONVSUM_FORMS.items():
        error = relative_error(_explain(name, model, x, target), form(filters, signals, scale))
        assert error < TOLERANCE["float64"], (name, error)


def test_convsum_closed_form_by_hand():
    """One filter w = (1, -1) on x = (0, 2, 1): windows (0, 2) -> -2 (off), (2, 1) -> 1 (on)."""
    filters, x = np.array([[[1.0, -1.0]]]), np.array([[[0.0, 2.0, 1.0]]])
    np.testing.assert_array_equal(convsum_gradient(filters, x), [[[0.0, 1.0, -1.0]]])
    np.testing.assert_array_equal(CONVSUM_FORMS["deconvnet"](filters, x, 1.0), [[[1.0, 0.0, -1.0]]])
    np.testing.assert_array_equal(CONVSUM_FORMS["gradient_x_input"](filters, x, 2.0), [[[0.0, 4.0, -2.0]]])


def test_guided_backprop_equals_the_gradient_for_convsum():
    """Sum pooling sends a positive gradient (the scale) into every ReLU, so GBP's rule changes nothing."""
    model, x = random_instance(0, 3)
    target = torch.zeros(len(x), dtype=torch.long)
    for dtype in (torch.float64, torch.float32):
        m, xs = copy.deepcopy(model).to(dtype), x.to(dtype)
        assert torch.equal(get_method("guided_backprop")(m, xs, target), get_method("gradient")(m, xs, target))
    with pytest.raises(ValueError, match="negative one flips guided backprop"):
        ConvSumModel(4, 3, scale=-1.0)


def test_deconvnet_map_does_not_depend_on_the_input():
    model, x = random_instance(0, 5)
    target = torch.zeros(len(x), dtype=torch.long)
    maps = get_method("deconvnet")(model, torch.cat([x, -3 * x.flip(-1)]), target.repeat(2))
    assert torch.allclose(maps, maps[:1].expand_as(maps), rtol=0, atol=1e-12)
    assert not torch.allclose(get_method("gradient")(model, x, target)[0], maps[0])


def test_float32_agreement_is_within_the_stated_tolerance():
    rows = pd.DataFrame(sum((agreement_rows(*random_instance(1, i), instance=i, ig_steps=50, seed=1)
                             for i in range(3)), []), columns=AGREEMENT_COLUMNS)
    rel = rows[rows["metric"] == "rel_error"]
    assert set(rel["method"]) == set(CONVSUM_FORMS) and set(rel["dtype"]) == {"float32", "float64"}
    assert (rel["value"] <= rel["tolerance"]).all(), rel.sort_values("value").tail()


def test_many_random_filters_approach_the_normalized_input():
    """E[1[w.v > 0] w] = sigma v / (sqrt(2 pi) ||v||) for Gaussian w: Monte-Carlo check of the limit."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 24))
    n_filters, width = 20000, 5
    filters = rng.standard_normal((n_filters, 1, width))
    estimate = convsum_gradient(filters, x) * np.sqrt(2 * np.pi) / n_filters
    assert relative_error(estimate, convsum_gradient_limit(x, width)) < 0.05


# ---------------------------------------------------------------- linear closed forms


@FAST
@given(classes=st.integers(1, 5), height=st.integers(1, 6), width=st.integers(1, 6), batch=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_linear_registry_matches_closed_forms(classes, height, width, batch, seed):
    model = LinearModel(height * width, classes).double().eval()
    model.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.logits.bias.normal_(generator=torch.Generator().manual_seed(seed + 1))
    gen = torch.Generator().manual_seed(seed + 2)
    x = torch.rand(batch, 1, height, width, generator=gen, dtype=torch.float64)
    target = torch.randint(classes, (batch,), generator=gen)
    weights = model.logits.weight.detach().numpy()
    for name, form in LINEAR_FORMS.items():
        error = relative_error(_explain(name, model, x, target), form(weights, x.numpy(), target.numpy()))
        assert error < TOLERANCE["float64"], (name, error)


def test_linear_gradient_is_the_same_for_every_input_and_ig_equals_gradient_x_input():
    model = LinearModel(16, 3).eval()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.full((5,), 2)
    grads = get_method("gradient")(model, x, target)
    assert torch.equal(grads, grads[:1].expand_as(grads))
    assert torch.equal(grads[0].flatten(), model.logits.weight[2].detach())
    ig = get_method("integrated_gradients")(model, x, target, steps=50)
    torch.testing.assert_close(ig, get_method("gradient_x_input")(model, x, target), rtol=1e-5, atol=1e-7)


def test_map_images_puts_two_images_of_one_class_first():
    assert map_images(np.array([3, 1, 4, 3, 5]), 4).tolist() == [0, 3, 1, 2]
    assert map_images(np.array([3, 1, 4]), 4).tolist() == [0, 1, 2]  # no second 3


# ---------------------------------------------------------------- signals


def test_signals_are_seeded_balanced_and_bumps_mark_class_one():
    a, labels = make_signals(6, seed=3)
    b, _ = make_signals(6, seed=3)
    assert a.shape == (6, 1, 64) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, make_signals(6, seed=4)[0])
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    clean, labels = make_signals(4, seed=0, spec=SignalSpec(length=32, noise=0.0, level=0.0))
    assert torch.all(clean[labels == 0] == 0)  # no background, no noise: nothing but the bump
    bumps = clean[labels == 1]
    assert torch.all(bumps >= 0) and torch.all((bumps.amax(-1) > 0.7) & (bumps.amax(-1) <= 1.5))
    with pytest.raises(ValueError, match="too short"):
        SignalSpec(length=8)


# ---------------------------------------------------------------- analyses, CLI, figures


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    """A tiny 'mnist': bright strokes on a zero background, as IDX files."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "mnist" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for image, label in zip(images, labels):
            image[6:22, 8 + label : 11 + label] = rng.integers(150, 256, (16, 3))
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="module")
def theory_dir(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("theory")
    settings_json = json.dumps(CONFIG)
    assert main(["theory", "convsum", "--settings", settings_json, "--out-dir", str(out)]) == 0
    assert main(["theory", "linear", "--settings", settings_json, "--data-dir", str(mnist_dir),
                 "--out-dir", str(out)]) == 0
    return out


def test_convsum_outputs_follow_their_columns(theory_dir):
    filters = pd.read_csv(theory_dir / "convsum_filters.csv")
    assert list(filters.columns) == FILTER_COLUMNS
    assert set(filters["reference"]) == {"input", "edges", "limit", "random_filters"}
    assert set(filters.loc[filters["reference"] == "random_filters", "filters"]) == {"trained"}
    assert set(filters["metric"]) == {"spearman_abs", "spearman_signed"}
    assert filters["value"].between(-1, 1).all() and len(filters["signal"].unique()) == CONVSUM["n_signals"]
    assert "deconvnet" not in set(filters.loc[filters["reference"] == "limit", "method"])  # no limit: 0 in mean
    training = pd.read_csv(theory_dir / "convsum_training.csv")
    assert list(training.columns) == TRAINING_COLUMNS and (training["filter_change"] > 0).all()
    agreement = pd.read_csv(theory_dir / "convsum_agreement.csv")
    assert list(agreement.columns) == AGREEMENT_COLUMNS
    rel = agreement[agreement["metric"] == "rel_error"]
    assert len(rel) == CONVSUM["agreement_instances"] * 2 * len(CONVSUM_FORMS)
    assert (rel["value"] <= rel["tolerance"]).all()


def test_random_filter_gradient_tends_to_its_limit(theory_dir):
    filters = pd.read_csv(theory_dir / "convsum_filters.csv")
    rows = filters[(filters["method"] == "gradient") & (filters["filters"] == "random")
                   & (filters["reference"] == "limit") & (filters["metric"] == "spearman_signed")]
    means = rows.groupby("n_filters")["value"].mean()
    assert means[64] > 0.85 and means[64] > means[1] + 0.2, means


def test_linear_outputs_follow_their_columns_and_closed_forms(theory_dir):
    table = pd.read_csv(theory_dir / "linear.csv")
    assert list(table.columns) == LINEAR_COLUMNS
    assert set(table["analysis"]) == {"agreement", "input", "randomization"}
    agreement = table[table["analysis"] == "agreement"]
    assert (agreement.loc[agreement["metric"] == "rel_error", "value"] <= TOLERANCE["float32"]).all()
    spread = agreement.loc[agreement["metric"] == "max_abs_diff_same_target", "value"].dropna()
    assert len(spread) and (spread == 0).all()  # the gradient is w_c, whatever the input
    inputs = table[(table["analysis"] == "input")].set_index(["weights", "method", "metric", "image"])["value"]
    gxi, ig = (inputs.xs(m, level="method") for m in ("gradient_x_input", "integrated_gradients"))
    np.testing.assert_allclose(gxi.sort_index(), ig.sort_index(), atol=1e-6)
    training = pd.read_csv(theory_dir / "linear_training.csv")
    assert training.loc[0, "model"] == "mnist-linear" and 0 <= training.loc[0, "test_acc"] <= 1


def test_theory_figures_render_from_the_outputs(theory_dir, tmp_path):
    for name, spec in FIGURES.items():
        if spec.model is None:
            continue
        paths = spec.input_paths(spec.model, results_dir=theory_dir.parent)
        inputs = {key: theory_dir / path.name for key, path in paths.items()}
        pdf, png, record = make_figure(name, spec.model, inputs, tmp_path, preset="smoke", notes="tiny")
        assert pdf.read_bytes().startswith(b"%PDF") and png.stat().st_size > 10_000
        caption = json.loads(record.read_text())["caption"]
        assert spec.model in caption and caption.endswith("Made with the smoke preset: tiny.")


def test_theory_figures_have_fixed_models_and_theory_input_paths(theory_dir, tmp_path):
    spec = FIGURES["linear_model"]
    assert spec.input_paths("mnist-linear") == {
        "theory_linear_maps": Path("results/theory/linear_maps.npz"),
        "theory_linear_csv": Path("results/theory/linear.csv"),
    }
    assert FIGURES["convsum_filters"].input_paths("signals-convsum") == {
        "theory_convsum_filters_csv": Path("results/theory/convsum_filters.csv")}
    inputs = {"theory_linear_maps": theory_dir / "linear_maps.npz", "theory_linear_csv": theory_dir / "linear.csv"}
    with pytest.raises(ValueError, match="about the model 'mnist-linear' only"):
        make_figure("linear_model", "mnist-cnn", inputs, tmp_path, preset="smoke")


def test_bad_theory_settings_are_one_line_errors(tmp_path, caplog):
    bad = json.loads(json.dumps(CONFIG))
    bad["theory"]["convsum"]["methods"] = ["sobel"]
    assert main(["theory", "convsum", "--settings", json.dumps(bad), "--out-dir", str(tmp_path)]) == 1
    assert "model-free control" in caplog.text
    assert main(["theory", "linear", "--settings", '{"seed": 0}', "--out-dir", str(tmp_path)]) == 1
    assert "theory" in caplog.text and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="n_signals <= n_test"):
        ConvSumSettings.from_config({"theory": {"convsum": dict(CONVSUM, n_signals=100)}})
