"""The pieces of benchmarks/mprt_vs_quantus.py: same stages, same maps, same work, the agreement numbers;
and benchmarks/inception_speed.py end to end in its --quick mode.

Fast: the CNN untrained, two random images, the cheap deterministic methods. The tests that run
Quantus are skipped without it (the optional extra ``bench``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from saliency_sanity.methods.registry import get_method
from saliency_sanity.models import build_model

try:
    import quantus
except ImportError:  # the optional extra "bench"
    quantus = None
needs_quantus = pytest.mark.skipif(quantus is None, reason="Quantus is not installed (pip install -e '.[bench]')")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "mprt_vs_quantus.py"
STAGES = ["original", "logits", "fc", "conv2", "conv1"]

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflow"


def _load_script(path: Path = SCRIPT):
    """A benchmark script imported as a module named after its file, as Python runs it (its folder on sys.path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_script()
cascade = sys.modules["cascade"]  # benchmarks/cascade.py, which the scripts import


@pytest.fixture(scope="module")
def cnn():
    return build_model("cnn", seed=0).eval()


@pytest.fixture(scope="module")
def inputs():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x[..., :4, :] = 0  # a black border, like MNIST
    return x, torch.tensor([3, 7])


def _quantus_stages(view, seed=0):
    wrapped = quantus.helpers.model.pytorch_model.PyTorchModel(view, channel_first=True)
    return wrapped.get_random_layer_generator(order="top_down", seed=seed)


@needs_quantus
def test_quantus_randomizes_our_blocks_top_down_cumulatively_with_the_model_initializer(cnn, inputs):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    view = bench.quantus_view(cnn, inputs[0][:1], init="model")
    names = []
    for name, randomized in _quantus_stages(view):
        names.append(name)
        layer = getattr(randomized, name)
        assert torch.all(layer.bias == 0.1)  # the CNN's initializer: bias 0.1, weights N(0, 0.1) cut at 2 sigma
        assert layer.weight.abs().max() <= 0.2 and 0.08 < layer.weight.std() < 0.1
        for lower in cnn.block_names[len(names):]:  # blocks below are still the trained ones
            assert torch.equal(getattr(randomized, lower).weight, before[f"{lower}.weight"])
    assert names == list(cnn.block_names)
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())  # the model itself untouched


@needs_quantus
def test_torch_init_keeps_pytorch_default_initializers(cnn, inputs):
    view = bench.quantus_view(cnn, inputs[0][:1], init="torch")
    name, randomized = next(_quantus_stages(view))
    bound = 1 / math.sqrt(cnn.logits.in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert name == "logits" and randomized.logits.bias.abs().max() <= bound


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "integrated_gradients", "guided_backprop",
                                    "gradcam", "guided_gradcam"])
def test_captum_side_computes_the_same_maps_as_ours(cnn, inputs, method):
    x, t = inputs
    view = bench.quantus_view(cnn, x[:1])  # what Quantus hands Captum
    settings = bench.CaptumSettings(ig_steps=50, smoothgrad_samples=50, smoothgrad_stdev=0.15, batch_size=64,
                                    gradcam_layer=bench.gradcam_layer_name(cnn))
    if "gradcam" in method:  # an untrained CNN's Grad-CAM is zero for some classes: explain one where it is not
        cams = torch.stack([get_method("gradcam")(cnn, x, torch.full_like(t, c)).flatten(1).amax(1) for c in range(10)])
        t = cams.argmax(dim=0)
        assert (cams.amax(dim=0) > 0).all()
    theirs = bench.captum_explain(view, x.numpy(), t.numpy(), method=method, settings=settings)
    ours = get_method(method)(cnn, x, t).numpy()
    if "gradcam" in method:  # ours divides Grad-CAM by its maximum per image (ranks unchanged)
        peak = np.abs(bench.captum_explain(view, x.numpy(), t.numpy(), method="gradcam", settings=settings))
        theirs = theirs / peak.reshape(len(x), -1).max(axis=1).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6 * np.abs(ours).max())


def test_smoothgrad_noise_is_the_configured_fraction_of_the_input_range(inputs):
    config = bench.project_config(["smoothgrad", "integrated_gradients"], 2, 0, 100)
    settings = bench.captum_settings(config, inputs[0] * 2)  # inputs now span [0, ~2]
    span = float(inputs[0].max() * 2 - inputs[0].min() * 2)
    assert settings.smoothgrad_stdev == pytest.approx(0.15 * span)
    assert (settings.ig_steps, settings.smoothgrad_samples, settings.batch_size) == (50, 50, 100)
    assert config["randomization"]["explain"] == "true_label"
    assert list(config["methods"]) == ["smoothgrad", "integrated_gradients"]


@needs_quantus
def test_both_sides_run_the_same_stages_and_count_their_work(cnn, inputs, tmp_path):
    x, t = inputs
    methods = ["gradient", "guided_backprop"]
    config = bench.project_config(methods, len(x), 0, 64)
    settings = bench.captum_settings(config, x)
    view = bench.quantus_view(cnn, x[:1])
    ours, run = bench.run_project(cnn, x, t, methods, config, torch.device("cpu"))
    ours_work = run.rows
    with cascade.counting_rows((1, 28, 28)) as quantus_work:
        theirs = bench.run_quantus(view, x, t, methods, settings, seed=0)
    for table in (ours, theirs):
        assert len(table) == len(methods) * len(STAGES) * len(x)
        assert table.groupby("method").stage.unique().map(list).tolist() == [STAGES, STAGES]
        assert table.value.between(-1, 1).all()
        assert np.allclose(table[table.stage == "original"].value, 1.0)  # deterministic methods
    # per image: ours 5 stages x (1 prediction + 1 map per method); Quantus (1 + 5 stages) x 1 map per method
    assert (ours_work.grad_total, ours_work.forward_only) == (len(x) * 5 * 2, len(x) * 5)
    assert ours_work.grad == {name: len(x) * 5 for name in methods}
    assert (quantus_work.grad_total, quantus_work.forward_only) == (len(x) * 6 * 2, 0)
    assert run.seconds >= sum(run.method_seconds.values()) + sum(run.parts.values())
    cells = bench.cell_table(ours, theirs, methods, STAGES)
    assert cells[["method", "stage"]].values.tolist() == [[m, s] for m in methods for s in STAGES]
    assert bench.agreement(cells)["cells"] == len(methods) * (len(STAGES) - 1)


def test_cell_table_and_agreement_by_hand():
    ours = pd.DataFrame({"method": "m", "stage": ["original"] * 2 + ["a"] * 2 + ["b"] * 2,
                         "image": [0, 1] * 3, "value": [1.0, 1.0, 0.5, 0.7, 0.2, 0.4]})
    theirs = ours.assign(value=[1.0, 1.0, 0.4, 0.6, np.nan, 0.1])
    cells = bench.cell_table(ours, theirs, ["m"], ["original", "a", "b"]).set_index("stage")
    assert cells.loc["a", "ours_mean"] == pytest.approx(0.6) and cells.loc["a", "diff"] == pytest.approx(0.1)
    assert cells.loc["a", "ours_se"] == pytest.approx(0.1)  # std 0.1414 / sqrt(2)
    assert cells.loc["a", "z"] == pytest.approx(0.1 / math.sqrt(0.02))
    assert cells.loc["b", "quantus_mean"] == pytest.approx(0.1) and cells.loc["b", "quantus_nan"] == 1
    assert math.isnan(cells.loc["original", "z"])  # both sides exact: no z
    summary = bench.agreement(cells.reset_index())
    assert summary["cells"] == 2 and summary["pearson_r"] == pytest.approx(1.0)  # (0.6, 0.3) vs (0.5, 0.1)
    assert summary["mean_abs_diff"] == pytest.approx(0.15) and summary["max_abs_diff"] == pytest.approx(0.2)


def test_cli_rejects_a_method_captum_is_not_wired_for():
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "gradient,deconvnet"])
    assert bench.parse_args(["--methods", "gradient, smoothgrad"]).methods == ["gradient", "smoothgrad"]


# --------------------------------------------------------------------------- benchmarks/inception_speed.py

SPEED_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "inception_speed.py"


def _load_speed_script():
    return _load_script(SPEED_SCRIPT)


def test_inception_speed_quick_runs_end_to_end_and_writes_its_keys(tmp_path):
    speed = _load_speed_script()
    out = tmp_path / "inception_speed.json"
    assert speed.main(["--quick", "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert {"settings", "integrated_gradients", "cascading"} <= set(summary)
    assert {"date", "size", "device", "threads", "machine", "versions", "load_average_1min"} <= set(summary["settings"])
    ig = summary["integrated_gradients"]
    assert (ig["steps"], ig["rule"], ig["captum_method"]) == (speed.QUICK["steps"], "right", "riemann_right")
    for side in ("ours", "captum", "bound"):
        assert ig[side]["seconds_per_image"] > 0 and ig[side]["batch_size"] in speed.QUICK["batch_sizes"]
    assert ig["max_abs_diff_over_max_abs"] < 1e-4  # the same maps: equal work
    assert set(ig["ratios"]) == {"ours_over_captum", "ours_over_bound", "captum_over_bound"}
    cascade = summary["cascading"]
    assert cascade["stages"] == len(cascade["stage_names"]) == speed.QUICK["stages"]
    assert cascade["stage_names"][:2] == ["original", "fc"]
    assert {"gradient", "integrated_gradients", "gradcam", "sobel"} <= set(cascade["methods"])
    passes = cascade["passes_per_image_per_stage"]
    # the runner sends at least the needed rows through the network, and at most what the methods take alone
    # (less where it shares work between methods)
    assert passes["needed"] <= passes["measured_rows_with_grad"] <= passes["alone"]
    # forward only, per image and stage: the stage's prediction, the zero baseline's logit for the completeness
    # errors (IG and DeepLIFT share it), and adaptive IG's f(x) and f(x') where the preset refines IG on ImageNet
    from saliency_sanity.config import resolve_config

    ig_params = resolve_config("default", workflow_dir=WORKFLOW_DIR)["imagenet"]["methods"]["integrated_gradients"]
    # + the methods' own forward-only rows (occlusion's copies and original, CAM's forward, RevealCancel's
    # positive differences), per method too
    assert passes["measured_rows_forward_only"] == 1 + 1 + (2 if ig_params.get("tolerance") else 0) + passes[
        "methods_forward_only"]
    for name in ("occlusion", "cam", "deeplift_revealcancel"):
        assert cascade["per_method"][name]["measured_forward_rows"] == cascade["per_method"][name]["forward"] > 0
    assert cascade["per_method"]["sobel"]["needed"] == 0 and cascade["per_method"]["gradient"]["needed"] == 1
    assert cascade["bound_seconds"] == pytest.approx(
        passes["needed"] * cascade["gradient_seconds_per_row"] * cascade["stages"])
    assert cascade["seconds"] > 0 and cascade["ratio"] == pytest.approx(cascade["seconds"] / cascade["bound_seconds"])


def test_inception_speed_counts_passes_from_the_method_params():
    speed = _load_speed_script()
    from saliency_sanity.config import resolve_config
    from saliency_sanity.randomization import Settings
    from saliency_sanity.models.inception import InceptionV3

    config = speed.cascade_config(0, 1, None, quick=False)
    settings = Settings.from_config(config)
    names = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "smoothgrad_squared", "vargrad",
             "ig_smoothgrad", "guided_backprop", "gradcam", "guided_gradcam", "deeplift_rescale", "canny"]
    counts = cascade.pass_counts([get_method(n) for n in names], settings)
    params = settings.method_params
    sg = params["smoothgrad"]["n_samples"]
    assert counts["integrated_gradients"]["needed"] == params["integrated_gradients"]["steps"]
    assert counts["smoothgrad"]["needed"] == sg and counts["vargrad"] == {
        "alone": sg, "needed": 0, "forward": 0, "count": "n_samples, shared with smoothgrad"}
    assert counts["ig_smoothgrad"]["needed"] == params["ig_smoothgrad"]["n_samples"] * params["ig_smoothgrad"]["steps"]
    assert (counts["guided_gradcam"]["alone"], counts["guided_gradcam"]["needed"]) == (2, 0)
    assert counts["gradient_x_input"]["needed"] == 0 and counts["canny"]["alone"] == 0
    assert (counts["deeplift_rescale"]["alone"], counts["deeplift_rescale"]["needed"]) == (2, 1)
    more = cascade.pass_counts([get_method(n) for n in ("occlusion", "meaningful_perturbation", "cam")], settings,
                               (3, 299, 299))
    window, stride = params["occlusion"]["window"], params["occlusion"]["stride"]
    side = len(range(0, 299 - window + 1, stride)) + ((299 - window) % stride != 0)  # + a window flush with the edge
    assert (more["occlusion"]["needed"], more["occlusion"]["forward"]) == (0, side * side + 1)
    assert more["meaningful_perturbation"]["needed"] == params["meaningful_perturbation"]["iterations"]
    assert (more["cam"]["needed"], more["cam"]["forward"]) == (0, 1)
    # the ImageNet run's settings: the imagenet section's methods on top of the methods section, its batch size
    imagenet = resolve_config("default", workflow_dir=WORKFLOW_DIR)["imagenet"]
    assert params["integrated_gradients"]["steps"] == imagenet["methods"]["integrated_gradients"]["steps"]
    assert params["smoothgrad"]["noise_level"] == imagenet["methods"]["smoothgrad"]["noise_level"]
    assert settings.batch_size == imagenet["batch_size"]
    assert InceptionV3.block_names[0] == "fc" and len(InceptionV3.block_names) == speed.ALL_STAGES - 1
