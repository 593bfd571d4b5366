"""Each baseline of the attribution-baselines study against hand-computed values, and how the config names them."""

from __future__ import annotations

import pytest
import torch

from saliency_sanity.baselines import BaselineSpec, gaussian_blur, make_baseline
from saliency_sanity.context import Context, ValidRange
from saliency_sanity.harness import Harness
from saliency_sanity.methods import get_method
from saliency_sanity.registry import UnknownNameError

IMAGENET_LIKE = ValidRange((-2.0, -1.0, 0.0), (2.0, 1.0, 4.0))  # per channel, as a normalized model's input


def test_constant_is_a_colour_as_a_fraction_of_each_channels_range():
    x, context = torch.zeros(2, 3, 4, 4), Context(valid_range=IMAGENET_LIKE)
    black = make_baseline("constant", x, context)
    assert black[:, 0].eq(-2).all() and black[:, 1].eq(-1).all() and black[:, 2].eq(0).all()
    colour = make_baseline({"name": "constant", "colour": [0.5, 0.25, 1.0]}, x, context)
    assert colour[:, 0].eq(0).all() and colour[:, 1].eq(-0.5).all() and colour[:, 2].eq(4).all()
    with pytest.raises(ValueError, match="colour"):
        make_baseline({"name": "constant", "colour": 1.5}, x, context)


def test_max_distance_takes_the_farther_end_of_the_range_per_pixel():
    x = torch.tensor([[[[0.1, 0.6, 0.5, 0.9]]]])
    expected = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])  # at the midpoint both ends are equally far: the bottom
    assert torch.equal(make_baseline("max_distance", x, Context()), expected)


def test_blur_keeps_a_constant_image_and_a_wide_blur_tends_to_the_mean():
    flat = torch.full((1, 1, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    impulse = torch.zeros(1, 1, 1, 41)
    impulse[..., 20] = 1.0
    blurred = gaussian_blur(impulse, 3.0)[0, 0, 0]
    offsets = torch.arange(-20.0, 21.0)
    profile = torch.exp(-0.5 * (offsets / 3.0) ** 2) * (offsets.abs() <= 9)  # truncated at 3 sigma
    torch.testing.assert_close(blurred, profile / profile.sum(), atol=1e-7, rtol=1e-5)  # the normalized kernel
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    wide = make_baseline({"name": "blurred", "sigma": 200}, x, Context())
    torch.testing.assert_close(wide, x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=0.02, rtol=0)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 20.0])
def test_blur_equals_scipys_gaussian_filter_with_mirrored_edges(sigma):
    """Written in torch to stay on the device; SciPy's filter is the reference (mode reflect, truncate 3)."""
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 3, 28, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=3.0)
    torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(expected), rtol=1e-10, atol=1e-12)


def test_gaussian_is_x_plus_noise_clipped_to_the_range():
    x, context = torch.full((1, 1, 64, 64), 0.5), Context(seed=1)
    small = make_baseline({"name": "gaussian", "sigma": 0.01}, x, context)
    assert 0.005 < (small - x).std() < 0.015
    wide = make_baseline({"name": "gaussian", "sigma": 10.0}, x, context)
    assert set(wide.unique().tolist()) >= {0.0, 1.0}  # clipped at both ends


def test_training_draws_one_training_input_per_example():
    train = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2).clone()
    drawn = make_baseline("training", torch.zeros(8, 1, 2, 2), Context(train_data=train))
    assert all(any(torch.equal(d, t) for t in train) for d in drawn)
    with pytest.raises(ValueError, match="training inputs"):
        make_baseline("training", torch.zeros(8, 1, 2, 2), Context())


def test_the_config_names_a_baseline_with_its_parameters_and_bad_ones_name_the_key():
    spec = BaselineSpec.parse({"name": "blurred", "sigma": 5}, "methods.integrated_gradients.baseline")
    assert (spec.name, dict(spec.params)) == ("blurred", {"sigma": 5})
    key = "methods.integrated_gradients.baseline"
    with pytest.raises(ValueError, match=rf"{key} has unknown parameter\(s\) \['radius'\]"):
        Harness({"integrated_gradients": {"baseline": {"name": "blurred", "radius": 3}}})
    with pytest.raises(ValueError, match="without 'name'"):
        Harness({"integrated_gradients": {"baseline": {"sigma": 3}}})
    with pytest.raises(UnknownNameError, match=key):
        Harness({"integrated_gradients": {"baseline": "blurry"}})


def test_ig_with_a_configured_baseline_is_ig_from_that_baseline(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    harness = Harness({"integrated_gradients": {"steps": 8, "baseline": {"name": "blurred", "sigma": 3}}},
                      methods=["integrated_gradients"])
    maps = harness.explain(cnn, images, target)["integrated_gradients"]
    direct = get_method("integrated_gradients")(cnn, images, target, steps=8, baseline=gaussian_blur(images, 3.0))
    assert torch.equal(maps, direct)
    assert harness.needs_train_data() is False
    assert Harness({"deeplift_rescale": {"baseline": "training"}}).needs_train_data() is True


# --------------------------------------------------------------------------- several draws, expected gradients


class Linear(torch.nn.Module):
    """f(x) = W x + b on flattened inputs: every path gradient is W's row, so attributions have closed forms."""

    def __init__(self, features: int, classes: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _linear_setup():
    torch.manual_seed(0)
    model = Linear(16).eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    train = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    return model, x, torch.tensor([0, 1, 2, 0]), train


def test_expected_gradients_on_a_linear_model_is_w_times_x_minus_the_mean_baseline():
    model, x, target, train = _linear_setup()
    harness = Harness({"expected_gradients": {"n_samples": 400, "baseline": "training"}}, methods=["expected_gradients"],
                      train_data=train)
    maps = harness.explain(model, x, target)["expected_gradients"]
    w = model.fc.weight[target].view_as(x).detach()
    drawn = harness.bind(harness.methods[0]).baselines_for(x)  # the 400 draws the method used
    assert drawn.shape == (400, *x.shape)
    torch.testing.assert_close(maps, w * (x - drawn.mean(0)))  # exact: the closed form of the draws
    torch.testing.assert_close(maps, w * (x - train.mean(0)), atol=0.05 * w.abs().max().item(), rtol=0)  # E[x']


def test_baseline_draws_average_any_path_method_over_draws_of_a_stochastic_baseline(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    params = {"steps": 4, "baseline": "uniform", "baseline_draws": 3}
    harness = Harness({"integrated_gradients": params}, methods=["integrated_gradients"], batch_size=5)
    maps = harness.explain(cnn, images, target)["integrated_gradients"]
    draws = harness.bind(harness.methods[0]).baselines_for(images)
    assert len(draws) == 3 and not torch.equal(draws[0], draws[1])
    ig = get_method("integrated_gradients")
    direct = torch.stack([ig(cnn, images, target, steps=4, baseline=b) for b in draws]).mean(0)
    torch.testing.assert_close(maps, direct, rtol=1e-5, atol=1e-7)


def test_draw_settings_that_cannot_mean_anything_are_errors_naming_the_key():
    with pytest.raises(ValueError, match=r"methods.integrated_gradients.baseline_draws is 3, but baseline 'zero'"):
        Harness({"integrated_gradients": {"baseline_draws": 3}})
    with pytest.raises(ValueError, match="positive integer"):
        Harness({"integrated_gradients": {"baseline": "uniform", "baseline_draws": 0}})
    with pytest.raises(ValueError, match="sets its own draws"):
        Harness({"expected_gradients": {"baseline": "uniform", "baseline_draws": 2}})


def test_an_opt_in_method_runs_only_where_the_config_names_it():
    assert "expected_gradients" not in [m.name for m in Harness().methods]
    assert "expected_gradients" in [m.name for m in Harness({"expected_gradients": {"baseline": "uniform"}}).methods]
