"""Re-initialization laws (saliency_sanity.randomization.laws): each gives its documented distribution,
through the config and the cascading test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from saliency_sanity.models import build_model
from saliency_sanity.randomization import LAWS, LawSpec, Settings, block_generator, cascading


def _trained_like() -> nn.Module:
    model = build_model("cnn", seed=0)
    with torch.no_grad():  # values no initializer would give, so a law's effect is visible
        for p in model.parameters():
            p.mul_(3.0).add_(0.25)
    return model


def _block_params(model, name: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.block(name).parameters()]


def test_the_registry_has_the_four_laws_and_the_model_law_is_init_block():
    assert {"model", "reset_parameters", "permute", "gaussian_noise"} <= set(LAWS.names())
    a, b = _trained_like(), _trained_like()
    LawSpec.parse("model").apply(a, "logits", block_generator(0, "logits"))
    b.init_block("logits", block_generator(0, "logits"))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_permute_keeps_each_tensors_multiset_of_values_and_changes_their_order():
    model = _trained_like()
    before = _block_params(model, "conv2")
    LawSpec.parse("permute").apply(model, "conv2", block_generator(0, "conv2"))
    for old, new in zip(before, _block_params(model, "conv2")):
        assert torch.equal(old.flatten().sort().values, new.flatten().sort().values)
        assert torch.equal(old, new) == (old.unique().numel() == 1)  # a constant tensor (the biases) stays as it is


def test_gaussian_noise_adds_noise_of_the_stated_relative_scale():
    model = _trained_like()
    before = _block_params(model, "fc")
    LawSpec.parse({"name": "gaussian_noise", "scale": 0.5}).apply(model, "fc", block_generator(1, "fc"))
    weight_before, weight_after = before[0], _block_params(model, "fc")[0]
    noise = weight_after - weight_before
    assert noise.mean().abs() < 0.01 * weight_before.std()
    assert noise.std() == pytest.approx(0.5 * weight_before.std(unbiased=False).item(), rel=0.02)  # 200k draws


def test_reset_parameters_draws_pytorchs_default_law_reproducibly():
    a, b = _trained_like(), _trained_like()
    for model in (a, b):
        LawSpec.parse("reset_parameters").apply(model, "fc", block_generator(0, "fc"))
    linear = a.block("fc")
    bound = 1 / math.sqrt(linear.in_features)  # kaiming_uniform(a=sqrt(5)) and the bias: U(-1/sqrt(fan_in), ...)
    assert linear.weight.abs().max() <= bound and linear.weight.abs().max() > 0.9 * bound
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # a seed, the same draw
    assert not torch.equal(a.block("logits").weight, build_model("cnn", seed=0).block("logits").weight)  # untouched


def test_the_config_chooses_the_law_and_names_bad_values():
    assert Settings.from_config({"randomization": {"law": "permute", "n_images": 2}, "methods": {}}).law.law.name == "permute"
    assert Settings.from_config({"randomization": {"n_images": 2}, "methods": {}}).law.law.name == "model"
    with pytest.raises(ValueError, match="re-initialization law.*shuffle"):
        LawSpec.parse("shuffle")
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['sigma'\]"):
        LawSpec.parse({"name": "gaussian_noise", "sigma": 1})


def test_a_cascade_by_permutation_keeps_every_randomized_tensors_values():
    model = _trained_like()
    *_, (index, name, last) = cascading(model, seed=0, law=LawSpec.parse("permute"))
    assert index == len(model.block_names)
    for old, new in zip(model.parameters(), last.parameters()):
        assert torch.equal(old.flatten().sort().values, new.flatten().sort().values)
    assert any(not torch.equal(old, new) for old, new in zip(model.parameters(), last.parameters()))


# --------------------------------------------------------------------------- granularity and order


def test_module_granularity_on_inception_is_one_stage_per_parameterized_module_top_down():
    from saliency_sanity.models.inception import InceptionV3

    model = InceptionV3()
    units = model.randomization_units("modules")
    in_blocks = [name for name, module in model.named_modules()
                 if next(module.parameters(recurse=False), None) is not None
                 and any(name == b or name.startswith(b + ".") for b in model.block_names)]
    assert sorted(units) == sorted(in_blocks) and len(set(units)) == len(units)
    assert units[0] == "fc" and units[-1].startswith("Conv2d_1a_3x3")  # the logits first, the input's layer last
    position = {name: i for i, name in enumerate(units)}
    assert position["Mixed_7c.branch_pool.conv"] < position["Mixed_7b.branch1x1.conv"]  # a higher block first
    assert position["Mixed_7c.branch_pool.bn"] < position["Mixed_7c.branch_pool.conv"]  # within one: top down
    assert model.randomization_units("blocks") == model.block_names


def test_a_module_is_re_initialized_alone_by_the_models_initializer():
    from saliency_sanity.models.inception import InceptionV3

    model = InceptionV3()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    LawSpec.parse("model").apply(model, "Mixed_7c.branch_pool.conv", block_generator(0, "Mixed_7c.branch_pool.conv"))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"Mixed_7c.branch_pool.conv.weight"}


def test_the_order_and_granularity_reach_the_stages():
    from saliency_sanity.randomization import ModeInputs, mode_spec

    model = build_model("cnn", seed=0)
    inputs = ModeInputs(seed=0, granularity="modules", order="bottom_up")
    spec = mode_spec("cascading")
    assert spec.stage_names(model, inputs) == ["original", "conv1", "conv2", "fc", "logits"]
    names = [stage.name for stage in spec.stages(model, inputs)]
    assert names == spec.stage_names(model, inputs)
    with pytest.raises(ValueError, match="granularity 'blocks'"):
        model.init_unit("relu1")  # a module that is not a block: the MNIST models re-initialize blocks only
    with pytest.raises(ValueError, match="randomization.order"):
        Settings.from_config({"randomization": {"n_images": 2, "order": "sideways"}, "methods": {}})
