"""Registry-wide contract of the explanation methods, run on every shipped model.

Every registered method (including ones added later) is checked for: output of x's shape,
dtype and device, finite values; determinism given a seeded generator; batch_size chunking
not changing the map; and the model left exactly as it was (weights, modes, flags, hooks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.modules import module as torch_module

from saliency_sanity.methods import METHODS, available_methods, get_method, register
from saliency_sanity.methods.completeness import completeness_error
from saliency_sanity.methods.registry import UnknownMethodError

ROOT = Path(__file__).resolve().parents[1]
PAPER_METHODS = {
    "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "smoothgrad_squared",
    "vargrad", "ig_smoothgrad", "guided_backprop", "deconvnet", "gradcam", "guided_gradcam",
    "deeplift_rescale", "sobel", "canny", "random_noise",
}
# Small settings for the expensive parameters so the registry-wide tests stay fast.
FAST = {"steps": 2, "n_samples": 2}
# maps whose float32 rounding grows past one backward pass's: occlusion's are differences of two logits (of order 10
# on the shipped models); meaningful perturbation's are masks after hundreds of optimiser steps, which carry it forward
ROUNDING_GROWS = {"occlusion", "meaningful_perturbation"}
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks")


def fast_params(name: str, seed: int = 0) -> dict:
    method = get_method(name)
    params = {k: v for k, v in FAST.items() if k in method.accepts()}
    if method.stochastic:
        params["generator"] = torch.Generator().manual_seed(seed)
    return params


def explain(name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, seed: int = 0, **extra) -> torch.Tensor:
    if get_method(name).needs_baseline:  # a baseline off the origin: on a bias-free ReLU network a zero
        extra.setdefault("baseline", torch.rand(x.shape, generator=torch.Generator().manual_seed(99)))  # one is special
    return get_method(name)(model, x, target, **fast_params(name, seed), **extra)


def applicable(name: str, model: nn.Module) -> None:
    if not get_method(name).applies_to(model):
        pytest.skip(f"{name} does not apply to {type(model).__name__}")


def model_snapshot(model: nn.Module) -> dict:
    """Everything a method must leave unchanged, in comparable form."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "hooks": [
            (set(m._forward_hooks), set(m._forward_pre_hooks), set(m._backward_hooks), set(m._backward_pre_hooks))
            for m in model.modules()
        ],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "global_hooks": [set(getattr(torch_module, h)) for h in GLOBAL_HOOKS],
    }


def assert_unchanged(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"parameter/buffer {key} changed"
    for field in ("training", "requires_grad", "grads", "hooks", "attributes", "global_hooks"):
        assert before[field] == after[field], f"model {field} changed"


def test_the_paper_methods_are_registered_with_their_flags():
    assert PAPER_METHODS <= set(available_methods())
    flagged = lambda flag: {n for n in PAPER_METHODS if getattr(get_method(n), flag)}  # noqa: E731
    assert flagged("stochastic") == {"smoothgrad", "smoothgrad_squared", "vargrad", "ig_smoothgrad", "random_noise"}
    assert flagged("needs_baseline") == {"integrated_gradients", "deeplift_rescale", "ig_smoothgrad"}
    assert flagged("model_free") == {"sobel", "canny", "random_noise"}
    assert {n for n in PAPER_METHODS if get_method(n).requires} == {"gradcam", "guided_gradcam"}


@pytest.mark.parametrize("name", available_methods())
def test_signature_follows_the_contract(name):
    method = get_method(name)
    accepts = method.accepts()
    assert not method.stochastic or "generator" in accepts
    assert not method.needs_baseline or "baseline" in accepts
    assert not ({"steps", "n_samples"} & accepts) or "batch_size" in accepts
    assert method.description, "the first docstring line is the method's description"


def test_every_config_preset_names_registered_methods_and_their_params():
    presets = sorted((ROOT / "workflow" / "config").glob("*.yaml"))
    assert presets
    for path in presets:
        for name, params in (yaml.safe_load(path.read_text()).get("methods") or {}).items():
            assert name in available_methods(), f"{path.name}: unknown method {name}"
            assert set(params or {}) <= get_method(name).accepts(), f"{path.name}: {name} {params}"


@pytest.mark.parametrize("name", available_methods())
def test_output_has_the_input_shape_dtype_device_and_the_same_seed_gives_the_same_map(name, model, images, predicted):
    applicable(name, model)
    first = explain(name, model, images, predicted, seed=7)
    assert first.shape == images.shape and first.dtype == images.dtype and first.device == images.device
    assert torch.isfinite(first).all()
    assert first.abs().sum() > 0, "an all-zero map explains nothing"
    assert torch.equal(first, explain(name, model, images, predicted, seed=7))
    if get_method(name).stochastic:
        assert not torch.equal(first, explain(name, model, images, predicted, seed=8))


@pytest.mark.parametrize("name", [n for n in available_methods() if "batch_size" in get_method(n).accepts()])
def test_batch_size_only_bounds_memory(name, model, images, predicted):
    applicable(name, model)
    whole = explain(name, model, images, predicted)
    chunked = explain(name, model, images, predicted, batch_size=2)
    # a pass of another batch size rounds differently (float32); some methods carry that rounding further
    scale = max(whole.abs().max().item(), 1.0 if name in ROUNDING_GROWS else 0.0)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5 * scale * (10 if name in ROUNDING_GROWS else 1))


@pytest.mark.parametrize("name", [n for n in available_methods() if get_method(n).completeness])
def test_a_method_registered_complete_sums_to_the_change_of_the_target_logit(name, model, images, predicted):
    """Within 1 % of |f(x) - f(x')| on every shipped model for the zero baseline (300 steps where it takes steps)."""
    baseline = torch.zeros_like(images)
    steps = {"steps": 300} if "steps" in get_method(name).accepts() else {}
    maps = get_method(name)(model, images, predicted, baseline=baseline, **steps)
    with torch.no_grad():
        f_x, f_base = (model(z).gather(1, predicted.view(-1, 1)).squeeze(1) for z in (images, baseline))
    assert completeness_error(maps, f_x, f_base).max() < 0.01


@pytest.mark.parametrize("name", available_methods())
def test_the_model_is_left_unchanged(name, model, images, predicted):
    applicable(name, model)
    model.train()  # methods run in eval mode; the caller's mode must come back
    try:
        before = model_snapshot(model)
        explain(name, model, images, predicted)
        assert_unchanged(before, model_snapshot(model))
    finally:
        model.eval()


def test_the_unchanged_check_catches_leftover_hooks_attributes_and_grads(shipped_models, images):
    model = shipped_models["mlp"]
    before = model_snapshot(model)
    handle = model.relu1.register_forward_hook(lambda *args: None)
    try:
        with pytest.raises(AssertionError, match="hooks"):
            assert_unchanged(before, model_snapshot(model))
    finally:
        handle.remove()
    model.relu2.input = images  # what a hook-based library may leave behind
    try:
        with pytest.raises(AssertionError, match="attributes"):
            assert_unchanged(before, model_snapshot(model))
    finally:
        del model.relu2.input
    model(images).sum().backward()
    try:
        with pytest.raises(AssertionError, match="grads"):
            assert_unchanged(before, model_snapshot(model))
    finally:
        model.zero_grad(set_to_none=True)
    assert_unchanged(before, model_snapshot(model))


@pytest.mark.parametrize("name", [n for n in available_methods() if get_method(n).model_free])
def test_model_free_controls_ignore_model_and_target(name, shipped_models, images):
    cnn, mlp = shipped_models["cnn"], shipped_models["mlp"]
    a = explain(name, cnn, images, torch.zeros(3, dtype=torch.long))
    b = explain(name, mlp, images, torch.full((3,), 9, dtype=torch.long))
    assert torch.equal(a, b)


def test_gradcam_methods_do_not_apply_to_the_mlp(shipped_models, images):
    mlp = shipped_models["mlp"]
    for name in ("gradcam", "guided_gradcam"):
        assert get_method(name).applies_to(shipped_models["cnn"]) and not get_method(name).applies_to(mlp)
        with pytest.raises(ValueError, match="gradcam_layer"):
            get_method(name)(mlp, images, torch.zeros(3, dtype=torch.long))


def test_unknown_method_name_lists_the_known_ones():
    with pytest.raises(UnknownMethodError) as err:
        get_method("no_such_method")
    message = str(err.value)
    assert "no_such_method" in message and all(name in message for name in available_methods())
    assert isinstance(err.value, KeyError)


def test_a_method_registered_later_is_picked_up(model, images, predicted):
    try:

        @register("test_only_doubled_input")
        def doubled(model, x, target):
            """Twice the input (a test stand-in)."""
            return 2 * x

        assert "test_only_doubled_input" in available_methods()
        assert torch.equal(get_method("test_only_doubled_input")(model, images, predicted), 2 * images)
    finally:
        METHODS.remove("test_only_doubled_input") if "test_only_doubled_input" in METHODS else None
    assert "test_only_doubled_input" not in available_methods()


def test_batch_size_must_be_positive(model, images, predicted):
    with pytest.raises(ValueError, match="batch_size"):
        get_method("gradient")(model, images, predicted, batch_size=0)


class TinyConv1d(nn.Module):
    """A (B, C, L) model with one ReLU module per ReLU, a max-pool and a Grad-CAM layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.flatten = nn.Flatten()
        self.logits = nn.Linear(4 * 8, 3)
        self.gradcam_layer = self.relu
        generator = torch.Generator().manual_seed(0)
        for p in self.parameters():
            nn.init.uniform_(p, -0.5, 0.5, generator=generator)

    def forward(self, x):
        return self.logits(self.flatten(self.pool(self.relu(self.conv(x)))))


@pytest.mark.parametrize("name", [n for n in available_methods() if n != "canny"])
def test_one_dimensional_inputs(name):
    model = TinyConv1d().eval()
    applicable(name, model)
    x = torch.rand(2, 2, 16, generator=torch.Generator().manual_seed(1))
    out = explain(name, model, x, torch.tensor([0, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_canny_rejects_one_dimensional_inputs():
    with pytest.raises(ValueError, match="sobel"):
        get_method("canny")(TinyConv1d(), torch.rand(2, 2, 16), torch.tensor([0, 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["smoothgrad", "random_noise"])
def test_noise_is_drawn_on_the_inputs_device(name, shipped_models, images):
    model = shipped_models["cnn"]
    cuda_model = type(model)().cuda().eval()
    cuda_model.load_state_dict(model.state_dict())
    x, t = images.cuda(), torch.zeros(3, dtype=torch.long, device="cuda")
    gen = lambda: torch.Generator(device="cuda").manual_seed(0)  # noqa: E731
    first = get_method(name)(cuda_model, x, t, generator=gen())
    assert first.device == x.device
    # same noise; cuDNN's backward pass is not bitwise deterministic, hence a float32 tolerance
    torch.testing.assert_close(first, get_method(name)(cuda_model, x, t, generator=gen()), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Generator"):
        get_method(name)(cuda_model, x, t, generator=torch.Generator().manual_seed(0))
