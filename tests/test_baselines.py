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
