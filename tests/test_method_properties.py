"""Defining properties of each explanation method, checked on the shipped models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from captum.attr import DeepLift, IntegratedGradients, LayerGradCam, Occlusion

from saliency_sanity import similarity
from saliency_sanity.methods import get_method
from saliency_sanity.methods.completeness import completeness_error as relative_completeness_error
from saliency_sanity.methods.gradients import refined_alphas, riemann_alphas
from saliency_sanity.methods.perturbation import window_starts
from saliency_sanity.methods.smoothing import relative_sigma, smooth
from saliency_sanity.models import MnistCNN


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def target_logit(model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, target.view(-1, 1)).squeeze(1)


def completeness_gaps(attributions: torch.Tensor, model, x, baseline, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: |sum of attributions - (f(x) - f(x'))| and |f(x) - f(x')|."""
    delta = target_logit(model, x, target) - target_logit(model, baseline, target)
    return (attributions.flatten(1).sum(1) - delta).abs(), delta.abs()


def completeness_error(attributions: torch.Tensor, model, x, baseline, target) -> torch.Tensor:
    """Completeness gap relative to |f(x) - f(x')|, per image (the library's measure)."""
    return relative_completeness_error(attributions, target_logit(model, x, target), target_logit(model, baseline, target))


# Integrated Gradients ----------------------------------------------------------------------


def test_ig_completeness_error_shrinks_as_steps_grow(model, images, predicted):
    # A grey baseline: with zeros the (bias-free) MLP is positively homogeneous and IG is exact
    # at any step count. ReLU kinks make the error oscillate at small step counts, so the steps
    # grow by factors of 4 or more, and the error is pooled over images (sum of gaps / sum of |delta|).
    baseline = torch.full_like(images, 0.5)
    errors = []
    for steps in (4, 64, 256):
        ig = get_method("integrated_gradients")(model, images, predicted, baseline=baseline, steps=steps)
        gap, delta = completeness_gaps(ig, model, images, baseline, predicted)
        errors.append((gap.sum() / delta.sum()).item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


@pytest.mark.parametrize(("rule", "captum_method"), [("right", "riemann_right"), ("midpoint", "riemann_middle"),
                                                     ("trapezoid", "riemann_trapezoid"), ("gauss_legendre", "gausslegendre")])
def test_ig_agrees_with_captum(rule, captum_method, model, images, predicted):
    baseline = torch.rand(images.shape, generator=seeded(3))
    ours = get_method("integrated_gradients")(
        model, images, predicted, baseline=baseline, steps=8, rule=rule, batch_size=7
    )
    theirs = IntegratedGradients(model).attribute(
        images, baselines=baseline, target=predicted, n_steps=8, method=captum_method
    )
    if rule == "trapezoid":
        # Captum 0.9 spaces the 8 points 1/7 apart but weights them 1/8 (ends 1/16): its weights sum to 7/8,
        # not 1, so its trapezoid IG is 7/8 of the rule's.
        theirs = theirs * 8 / 7
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.abs().max().item())


def test_ig_original_rule_is_the_original_codes_endpoint_inclusive_mean():
    """f(x) = sum x^2, zero baseline: the path gradient at alpha is 2 alpha x, so IG is x^2 times twice
    the mean of the alphas: exactly x^2 for 0, 1/(n-1), ..., 1 (the original code's points), and
    x^2 (n + 1) / n for the right rule's 1/n, ..., 1."""

    class SumOfSquares(nn.Module):
        def forward(self, x):
            return (x**2).flatten(1).sum(1, keepdim=True)

    x = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]], dtype=torch.float64)
    target, n = torch.zeros(1, dtype=torch.long), 5
    ig = get_method("integrated_gradients")
    torch.testing.assert_close(ig(SumOfSquares(), x, target, steps=n, rule="original"), x**2)
    torch.testing.assert_close(ig(SumOfSquares(), x, target, steps=n, rule="right"), x**2 * (n + 1) / n)


def test_weighted_rules_are_exact_where_their_degree_allows():
    """f(x) = sum x^(d+1) on a zero baseline: the path integrand (d+1) alpha^d x^(d+1) has degree d in alpha,
    and IG is exactly x^(d+1). The trapezoid rule is exact for d = 1 with 2 points; Gauss-Legendre with n
    points for d up to 2n - 1; the right rule is not exact for either."""

    class Power(nn.Module):
        def __init__(self, power):
            super().__init__()
            self.power = power

        def forward(self, x):
            return (x**self.power).flatten(1).sum(1, keepdim=True)

    x = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]], dtype=torch.float64)
    target, ig = torch.zeros(1, dtype=torch.long), get_method("integrated_gradients")
    torch.testing.assert_close(ig(Power(2), x, target, steps=2, rule="trapezoid"), x**2)
    torch.testing.assert_close(ig(Power(6), x, target, steps=3, rule="gauss_legendre"), x**6)
    assert not torch.allclose(ig(Power(6), x, target, steps=3, rule="right"), x**6)
    with pytest.raises(ValueError, match="a tolerance refines nested rules"):
        ig(Power(2), x, target, steps=3, rule="gauss_legendre", tolerance=0.01)


def test_completeness_error_against_hand_computed_values():
    maps = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]], [[1.0, 0.0]], [[-1.0, 0.5]]])
    f_x, f_base = torch.tensor([5.0, 2.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 2.0, 2.0])
    # |3 - 4| / 4; delta 0 with a zero map; delta 0 with a map summing to 1; |-0.5 - (-1)| / 1
    expected = torch.tensor([0.25, 0.0, torch.inf, 0.5], dtype=torch.float64)
    assert torch.equal(relative_completeness_error(maps, f_x, f_base), expected)


@pytest.mark.parametrize("rule", ["right", "midpoint", "original"])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_a_refined_path_keeps_every_point_of_the_coarser_one(rule, steps):
    x = torch.zeros(1, dtype=torch.float64)
    finer, new = refined_alphas(steps, rule, x)
    assert finer > steps
    union = torch.cat([riemann_alphas(steps, rule, x), new]).sort().values
    torch.testing.assert_close(union, riemann_alphas(finer, rule, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["right", "midpoint", "trapezoid"])
def test_adaptive_ig_refines_each_image_until_complete_and_equals_fixed_ig_there(rule, model, images, predicted):
    ig = get_method("integrated_gradients")
    baseline = torch.full_like(images, 0.5)
    f_x, f_base = target_logit(model, images, predicted), target_logit(model, baseline, predicted)
    tolerance, start = 0.01, 2
    adaptive = ig(model, images, predicted, baseline=baseline, steps=start, rule=rule, tolerance=tolerance,
                  max_steps=400, batch_size=64)
    chain, reached = [start], []
    nested = "original" if rule == "trapezoid" else rule  # the trapezoid's grid is the original rule's
    while refined_alphas(chain[-1], nested, images)[0] <= 400:
        chain.append(refined_alphas(chain[-1], nested, images)[0])
    fixed = {n: ig(model, images, predicted, baseline=baseline, steps=n, rule=rule) for n in chain}
    for i in range(len(images)):
        # each image's map is fixed IG at the first step count of the chain that met the tolerance
        for n in chain:
            error = relative_completeness_error(fixed[n][i:i + 1], f_x[i:i + 1], f_base[i:i + 1]).item()
            if error <= tolerance:
                break
        torch.testing.assert_close(adaptive[i], fixed[n][i], rtol=1e-4, atol=1e-6 * fixed[n][i].abs().max().item())
        reached.append(n)
    errors = relative_completeness_error(adaptive, f_x, f_base)
    assert max(reached) > start
    assert all(error <= tolerance or n == chain[-1] for error, n in zip(errors, reached))


def test_adaptive_ig_stops_at_max_steps():
    """f(x) = sum relu(x - 0.3) on a zero baseline: the integrand jumps at alpha = 0.3 / x, so a right sum
    is never exact; at max_steps the refinement stops and returns the sum it reached."""

    class Kinked(nn.Module):
        def forward(self, x):
            return torch.relu(x - 0.3).flatten(1).sum(1, keepdim=True)

    x, target, ig = torch.full((1, 1, 1, 3), 0.7, dtype=torch.float64), torch.zeros(1, dtype=torch.long), \
        get_method("integrated_gradients")
    adaptive = ig(Kinked(), x, target, steps=3, tolerance=1e-9, max_steps=24)
    torch.testing.assert_close(adaptive, ig(Kinked(), x, target, steps=24))
    with pytest.raises(ValueError, match="tolerance"):
        ig(Kinked(), x, target, tolerance=0.0)


def test_ig_rejects_an_unknown_rule_and_a_mismatched_baseline(shipped_models, images):
    ig, cnn, target = get_method("integrated_gradients"), shipped_models["cnn"], torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown IG rule 'left'.*gauss_legendre"):
        ig(cnn, images, target, rule="left")
    with pytest.raises(ValueError, match="broadcast"):
        ig(cnn, images, target, baseline=torch.zeros(2, 1, 28, 28))


def test_a_shared_baseline_broadcasts_to_every_image(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    grey = torch.full((1, 28, 28), 0.3)
    shared = get_method("integrated_gradients")(cnn, images, target, baseline=grey, steps=4)
    per_image = get_method("integrated_gradients")(cnn, images, target, baseline=grey.expand(3, 1, 28, 28), steps=4)
    assert torch.equal(shared, per_image)


# DeepLIFT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["deeplift_rescale", "deeplift_revealcancel"])
def test_deeplift_summation_to_delta(rule, model, images, predicted):
    contributions = get_method(rule)(model, images, predicted)
    assert completeness_error(contributions, model, images, torch.zeros_like(images), predicted).max() < 1e-4


@pytest.mark.parametrize("rule", ["deeplift_rescale", "deeplift_revealcancel"])
def test_deeplift_summation_to_delta_is_exact_in_float64_for_any_baseline(rule, model, images, predicted):
    model64, x = copy.deepcopy(model).double(), images.double()
    baseline = torch.rand(x.shape, generator=seeded(4), dtype=torch.float64)
    contributions = get_method(rule)(model64, x, predicted, baseline=baseline)
    assert completeness_error(contributions, model64, x, baseline, predicted).max() < 1e-10


@pytest.mark.filterwarnings("ignore:.*hooks:UserWarning")
def test_deeplift_agrees_with_captum_where_captum_is_correct(shipped_models, images):
    # Captum 0.9 is right when no nonlinearity feeds another one directly (the MLP), wrong on
    # ReLU -> MaxPool (the CNN; captum issue #1104), which is why the method is implemented here.
    mlp, target = shipped_models["mlp"], torch.tensor([4, 5, 6])
    baseline = torch.rand(images.shape, generator=seeded(5))
    ours = get_method("deeplift_rescale")(mlp, images, target, baseline=baseline)
    theirs = DeepLift(mlp).attribute(images.clone().requires_grad_(), baselines=baseline, target=target)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-6 * theirs.abs().max().item())


def test_deeplift_differs_from_gradient_x_input_on_the_cnn(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    deeplift = get_method("deeplift_rescale")(cnn, images, target)
    assert not torch.allclose(deeplift, get_method("gradient_x_input")(cnn, images, target), atol=1e-4)


@pytest.mark.parametrize("rule", ["deeplift_rescale", "deeplift_revealcancel"])
def test_deeplift_subtract_class_mean_explains_the_logit_minus_the_class_mean(rule, shipped_models, images):
    cnn, target = copy.deepcopy(shipped_models["cnn"]).double(), torch.tensor([1, 2, 3])
    x, base = images.double(), torch.zeros_like(images.double())
    maps = get_method(rule)(cnn, x, target, subtract_class_mean=True)
    with torch.no_grad():
        centred = [(logits.gather(1, target.view(-1, 1)) - logits.mean(1, keepdim=True)).squeeze(1)
                   for logits in (cnn(x), cnn(base))]
    torch.testing.assert_close(maps.flatten(1).sum(1), centred[0] - centred[1], rtol=1e-9, atol=1e-12)


class MinOfTwo(nn.Module):
    """y = x1 - ReLU(x1 - x2) = min(x1, x2), the DeepLIFT paper's example for RevealCancel."""

    def __init__(self):
        super().__init__()
        self.difference, self.relu = nn.Linear(2, 1, bias=False), nn.ReLU()
        with torch.no_grad():
            self.difference.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x):
        return x[:, :1] - self.relu(self.difference(x))


def test_revealcancel_gives_both_inputs_of_a_min_importance_where_rescale_gives_one():
    """x = (3, 1), zero reference. Rescale: ReLU's multiplier is 2 / 2, all of min = 1 goes to x2. RevealCancel:
    dh+ = 3, dh- = -1; dy+ = (3 + 2 - 0) / 2 = 2.5, dy- = (0 + 2 - 3) / 2 = -0.5, so x1 gets 3 - 2.5 and x2 0.5."""
    x, target = torch.tensor([[3.0, 1.0], [1.0, 3.0]]), torch.zeros(2, dtype=torch.long)
    rescale = get_method("deeplift_rescale")(MinOfTwo(), x, target)
    reveal = get_method("deeplift_revealcancel")(MinOfTwo(), x, target)
    torch.testing.assert_close(rescale, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(reveal, torch.full((2, 2), 0.5))


def test_revealcancel_by_hand_on_a_two_layer_network():
    """h = ReLU(W x + b), y = v . h; x = (2, -1, 1), zero reference. Unit 1: terms 2, 2, -1 (W row 1, 2, -1)
    -> dz+ = 4, dz- = -1, z' = b1 = -0.5: dy+ = (ReLU(3.5) - 0 + ReLU(2.5) - ReLU(-1.5)) / 2 = 3,
    dy- = 2.5 - 3 = -0.5; m+ = 0.75, m- = 0.5. Unit 2: terms -2, 1, 3 (row -1, -1, 3) -> dz+ = 4, dz- = -2,
    z' = 1: dy+ = (5 - 1 + 3 - 0) / 2 = 3.5, dy- = 2 - 3.5 = -1.5; m+ = 0.875, m- = 0.75.
    Contributions (v = (1, -2)): x1 = 1 (2 * .75) - 2 (-2 * .75) = 4.5; x2 = 1 (2 * .75) - 2 (1 * .875) = -0.25;
    x3 = 1 (-1 * .5) - 2 (3 * .875) = -5.75; they sum to y(x) - y(0) = (2.5 - 2 * 3) - (0 - 2 * 1) = -1.5."""
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, -1.0], [-1.0, -1.0, 3.0]]))
        net[0].bias.copy_(torch.tensor([-0.5, 1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
    x = torch.tensor([[2.0, -1.0, 1.0]], dtype=torch.float64)
    reveal = get_method("deeplift_revealcancel")(net, x, torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(reveal, torch.tensor([[4.5, -0.25, -5.75]], dtype=torch.float64))
    assert reveal.sum().item() == pytest.approx(-1.5)


def test_revealcancel_equals_rescale_where_no_input_difference_cancels(shipped_models):
    """Non-negative inputs, a zero reference and a first layer of non-negative weights: every term of every
    unit is >= 0 at the first layer, so dz- = 0 and RevealCancel's multiplier is Rescale's; the MLP after
    it still cancels, so both are compared on a one-hidden-layer network."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)).double()
    with torch.no_grad():
        net[1].weight.abs_()
    x, target = torch.rand(3, 1, 28, 28, generator=seeded(6), dtype=torch.float64), torch.tensor([0, 4, 9])
    torch.testing.assert_close(get_method("deeplift_revealcancel")(net, x, target),
                               get_method("deeplift_rescale")(net, x, target), rtol=1e-12, atol=1e-12)


def test_revealcancel_differs_from_rescale_on_the_cnn(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    assert not torch.allclose(get_method("deeplift_revealcancel")(cnn, images, target),
                              get_method("deeplift_rescale")(cnn, images, target), atol=1e-4)


# Gradient family ---------------------------------------------------------------------------


def test_gradient_x_input_is_exactly_gradient_times_input(model, images, predicted):
    gradient = get_method("gradient")(model, images, predicted)
    assert torch.equal(get_method("gradient_x_input")(model, images, predicted), gradient * images)


def test_gradient_matches_a_finite_difference(shipped_models, images):
    cnn, target = copy.deepcopy(shipped_models["cnn"]).double(), torch.tensor([2, 2, 2])
    x = images.double()
    gradient = get_method("gradient")(cnn, x, target)
    pixel = (0, 0, 14, 15)
    step = torch.zeros_like(x)
    step[pixel] = 1e-6
    numeric = (target_logit(cnn, x + step, target) - target_logit(cnn, x - step, target))[0] / 2e-6
    assert numeric.item() == pytest.approx(gradient[pixel].item(), rel=1e-5)


# Smoothing ---------------------------------------------------------------------------------


def test_smoothgrad_with_vanishing_noise_is_the_gradient(model):
    # Inputs without constant patches: on MNIST's flat background the CNN's max-pools have exact
    # ties, where the gradient jumps and any noise, however small, reroutes it.
    x = torch.rand(3, 1, 28, 28, generator=seeded(6))
    target = torch.tensor([0, 1, 2])
    smoothed = get_method("smoothgrad")(model, x, target, n_samples=3, noise_level=1e-8, generator=seeded())
    gradient = get_method("gradient")(model, x, target)
    torch.testing.assert_close(smoothed, gradient, rtol=1e-4, atol=1e-6 * gradient.abs().max().item())


def test_ig_smoothgrad_with_vanishing_noise_is_ig(model):
    x = torch.rand(3, 1, 28, 28, generator=seeded(6))
    target = torch.tensor([0, 1, 2])
    smoothed = get_method("ig_smoothgrad")(model, x, target, n_samples=2, noise_level=1e-8, steps=5, generator=seeded())
    ig = get_method("integrated_gradients")(model, x, target, steps=5)
    torch.testing.assert_close(smoothed, ig, rtol=1e-4, atol=1e-5 * ig.abs().max().item())


def test_reductions_are_mean_mean_square_and_variance_of_the_same_samples(model, images, predicted):
    n, level = 4, 0.15
    maps = {
        name: get_method(name)(model, images, predicted, n_samples=n, noise_level=level, generator=seeded(11))
        for name in ("smoothgrad", "smoothgrad_squared", "vargrad")
    }
    # By hand: the same draws (each image's n copies in turn), their gradients, then the statistics.
    generator, sigma = seeded(11), level * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    samples = []
    for image, s, t in zip(images, sigma, predicted):
        noisy = image + s * torch.randn((n, *image.shape), generator=generator)
        samples.append(get_method("gradient")(model, noisy, t.repeat(n)))
    samples = torch.stack(samples)  # (B, n, C, H, W)
    mean, mean_square = samples.mean(dim=1), (samples**2).mean(dim=1)
    variance = ((samples - mean.unsqueeze(1)) ** 2).mean(dim=1)
    for name, expected in (("smoothgrad", mean), ("smoothgrad_squared", mean_square), ("vargrad", variance)):
        torch.testing.assert_close(maps[name], expected, rtol=1e-5, atol=1e-7 * expected.abs().max().item())
    torch.testing.assert_close(
        maps["vargrad"], maps["smoothgrad_squared"] - maps["smoothgrad"] ** 2, rtol=1e-3, atol=1e-6 * mean_square.max().item()
    )


def test_noise_is_relative_to_each_images_range():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, 10.0  # ranges 1 and 10
    assert torch.equal(relative_sigma(x, 0.15), torch.tensor([0.15, 1.5]))

    def identity(model, x, target, *, batch_size=None):
        """Returns its input, so smoothing it exposes the noise."""
        return x

    variance = smooth(
        identity, None, x, torch.zeros(2, dtype=torch.long), reduction="variance",
        n_samples=4000, noise_level=0.15, generator=seeded(),
    )
    per_image_std = variance.flatten(1).mean(1).sqrt()
    torch.testing.assert_close(per_image_std, torch.tensor([0.15, 1.5]), rtol=0.02, atol=0)


def test_smoothing_rejects_bad_settings(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="n_samples"):
        get_method("smoothgrad")(cnn, images, target, n_samples=0)
    with pytest.raises(ValueError, match="reduction"):
        smooth(get_method("gradient").fn, cnn, images, target, reduction="median", n_samples=2, noise_level=0.1)


# Guided backprop, deconvnet, Grad-CAM ------------------------------------------------------


def test_guided_backprop_differs_from_the_gradient(model, images, predicted):
    guided = get_method("guided_backprop")(model, images, predicted)
    gradient = get_method("gradient")(model, images, predicted)
    assert not torch.allclose(guided, gradient, atol=1e-3 * gradient.abs().max().item())


def test_guided_backprop_and_deconvnet_follow_their_relu_rules_on_a_one_hidden_layer_net(images):
    # Closed forms for logit = w2 . relu(W1 x): gradient = W1^T (w2 * [h > 0]),
    # guided backprop = W1^T relu(w2 * [h > 0]), deconvnet = W1^T relu(w2).
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    torch.nn.init.normal_(net[1].weight, generator=seeded(1))
    x, target = images[:1], torch.tensor([1])
    hidden = net[1](x.flatten(1))
    upstream = net[3].weight[1] * (hidden[0] > 0)  # d logit / d hidden pre-activation
    expected = (upstream.clamp(min=0) @ net[1].weight).view_as(x)
    torch.testing.assert_close(get_method("guided_backprop")(net, x, target), expected.detach())
    deconv_expected = (net[3].weight[1].clamp(min=0) @ net[1].weight).view_as(x)
    torch.testing.assert_close(get_method("deconvnet")(net, x, target), deconv_expected.detach())


def test_gradcam_is_in_unit_range_with_max_one_per_image(shipped_models, images):
    cnn = shipped_models["cnn"]
    with torch.no_grad():
        predicted = cnn(images).argmax(dim=1)
    cam = get_method("gradcam")(cnn, images, predicted)
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.equal(cam.flatten(1).amax(1), torch.ones(3))
    # A class with only negative evidence has an all-zero Grad-CAM map, not a division by zero.
    others = get_method("gradcam")(cnn, images, torch.tensor([0, 5, 9]))
    assert set(others.flatten(1).amax(1).tolist()) <= {0.0, 1.0} and others.min() >= 0


def test_gradcam_is_tiled_over_channels_and_guided_gradcam_is_the_product():
    model = MnistCNN(in_channels=3).eval()
    x, target = torch.rand(2, 3, 28, 28, generator=seeded(2)), torch.tensor([3, 4])
    cam = get_method("gradcam")(model, x, target)
    assert torch.equal(cam[:, 0], cam[:, 1]) and torch.equal(cam[:, 0], cam[:, 2])
    guided = get_method("guided_backprop")(model, x, target)
    assert torch.equal(get_method("guided_gradcam")(model, x, target), guided * cam)


def test_guided_gradcam_is_as_in_the_original_code():
    """Its Grad-CAM layer is the second convolution's ReLU output (``hidden2_hconv_act`` of the paper's
    CNN), and dividing Grad-CAM by its maximum before the product is a positive per-image scale that
    leaves every similarity score unchanged (README, "Guided Grad-CAM in the label test")."""
    model = MnistCNN().eval()
    assert model.gradcam_layer is model.relu2 and model.relu2 is not model.relu1
    x, target = torch.rand(4, 1, 28, 28, generator=seeded(6)), torch.tensor([1, 2, 3, 4])
    guided = get_method("guided_backprop")(model, x, target)
    cam = get_method("gradcam")(model, x, target)
    scale = torch.tensor([0.5, 3.0, 7.0, 0.01]).view(-1, 1, 1, 1)
    prepared = [similarity.prepare((guided * c).numpy(), normalization="max") for c in (cam, cam * scale)]
    reference = similarity.prepare((guided * cam).numpy(), normalization="max")
    scores = [similarity.compare(reference, p) for p in prepared]
    for metric in scores[0]:
        torch.testing.assert_close(torch.tensor(scores[1][metric]), torch.tensor(scores[0][metric]), rtol=1e-5, atol=1e-6)


def test_gradcam_equals_captums_layer_gradcam_resized_and_divided_by_its_maximum(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    theirs = LayerGradCam(cnn, cnn.gradcam_layer).attribute(images, target=target, relu_attributions=True)
    theirs = nn.functional.interpolate(theirs, size=(28, 28), mode="bilinear", align_corners=False)
    theirs = theirs / theirs.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)  # an all-zero map stays zero
    torch.testing.assert_close(get_method("gradcam")(cnn, images, target), theirs.detach(), rtol=1e-5, atol=1e-6)


class PooledHead(nn.Module):
    """conv -> ReLU (the CAM layer) -> global average pooling -> linear: the head CAM is defined for."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, 3)
        nn.init.normal_(self.conv.weight, generator=seeded(7))
        nn.init.normal_(self.fc.weight, generator=seeded(8))
        self.gradcam_layer, self.cam_classifier = self.relu, self.fc

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def test_cam_equals_gradcam_under_global_average_pooling_and_is_skipped_without_it(shipped_models):
    """d logit_c / d A_k = w_ck / (h w) at every position: Grad-CAM's weights are CAM's over a constant."""
    model, x, target = PooledHead().eval(), torch.rand(4, 1, 8, 8, generator=seeded(9)), torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(get_method("cam")(model, x, target), get_method("gradcam")(model, x, target))
    assert not get_method("cam").applies_to(shipped_models["cnn"])


def test_gradcam_plus_plus_by_hand_on_a_pooled_head():
    """Under global average pooling g = w_ck / (h w) everywhere, so alpha = g^2 / (2 g^2 + S_k g^3) with S_k the
    channel's sum of activations, and the channel's weight is h w alpha relu(g)."""
    model, x, target = PooledHead().eval(), torch.rand(2, 1, 8, 8, generator=seeded(10)), torch.tensor([2, 0])
    activations = model.relu(model.conv(x)).detach()
    g = model.fc.weight[target].detach() / 64
    alpha = g**2 / (2 * g**2 + activations.sum((2, 3)) * g**3)
    weights = 64 * alpha * g.relu()
    cam = (weights[:, :, None, None] * activations).sum(1, keepdim=True).relu()
    expected = cam / cam.flatten(1).amax(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(get_method("gradcam_plus_plus")(model, x, target), expected)
    assert not torch.allclose(expected, get_method("gradcam")(model, x, target))


# Perturbation methods ----------------------------------------------------------------------


def test_occlusion_equals_captums_where_the_windows_tile_the_image(shipped_models, images):
    cnn, target = shipped_models["cnn"], torch.tensor([1, 2, 3])
    theirs = Occlusion(cnn).attribute(images, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), target=target,
                                      baselines=0.3)
    ours = get_method("occlusion")(cnn, images, target, window=4, stride=2, fill=0.3, batch_size=50)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())


def test_occlusion_of_single_pixels_of_a_linear_model_is_gradient_x_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 6, 3)).double()
    x, target = torch.rand(2, 2, 5, 6, generator=seeded(11), dtype=torch.float64), torch.tensor([0, 2])
    occluded = get_method("occlusion")(net, x, target, window=1, stride=1)
    # a 1-pixel window covers every channel at that pixel: the drop is the sum over channels of w x
    expected = get_method("gradient_x_input")(net, x, target).sum(1, keepdim=True).expand_as(x)
    torch.testing.assert_close(occluded, expected)


def test_occlusion_windows_reach_the_far_edge():
    assert window_starts(28, 4, 2)[-1] == 24 and window_starts(299, 56, 56) == [0, 56, 112, 168, 224, 243]
    with pytest.raises(ValueError, match="window"):
        window_starts(28, 29, 2)


class QuadrantModel(nn.Module):
    """Class 0's logit is 20 x the mean of the top-left quadrant minus 5; class 1's is 0."""

    def forward(self, x):
        evidence = 20 * x[:, :, :14, :14].mean((1, 2, 3)) - 5
        return torch.stack([evidence, torch.zeros_like(evidence)], 1)


def test_meaningful_perturbation_deletes_the_evidence_and_is_deterministic():
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 2:12, 2:12] = 1.0  # a bright square inside the quadrant the class reads
    x[:, :, 16:26, 16:26] = 1.0  # and one where it does not look
    mp = get_method("meaningful_perturbation")
    maps = mp(QuadrantModel(), x, torch.zeros(2, dtype=torch.long), iterations=60, mask_size=14, blur_sigma=3.0)
    assert maps.min() >= 0 and maps.max() <= 1
    assert (maps[:, :, 2:12, 2:12].mean() > 0.3) and (maps[:, :, 16:26, 16:26].mean() < 0.05)
    again = mp(QuadrantModel(), x, torch.zeros(2, dtype=torch.long), iterations=60, mask_size=14, blur_sigma=3.0)
    assert torch.equal(maps, again)


# Model-free controls -----------------------------------------------------------------------


def vertical_step(width: int = 16, edge: int = 8) -> torch.Tensor:
    x = torch.zeros(1, 1, width, width)
    x[..., edge:] = 1.0
    return x


def test_sobel_of_a_vertical_step_is_nonzero_only_at_the_edge():
    edges = get_method("sobel")(torch.nn.Identity(), vertical_step(), torch.zeros(1, dtype=torch.long))[0, 0]
    columns_with_response = edges.abs().sum(dim=0).nonzero().flatten().tolist()
    assert columns_with_response == [7, 8]  # the two columns either side of the step
    assert (edges[:, 7:9] > 0).all()


def test_canny_of_a_vertical_step_marks_the_edge_columns_only():
    edges = get_method("canny")(torch.nn.Identity(), vertical_step(), torch.zeros(1, dtype=torch.long), sigma=1.0)[0, 0]
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    assert set(edges.sum(dim=0).nonzero().flatten().tolist()) <= {7, 8}
    assert edges.sum() > 0


def test_random_noise_depends_on_the_seed_only(images):
    noise = get_method("random_noise")
    t = torch.zeros(3, dtype=torch.long)
    first = noise(torch.nn.Identity(), images, t, generator=seeded(1))
    assert torch.equal(first, noise(torch.nn.Identity(), images, t, generator=seeded(1)))
    assert not torch.equal(first, noise(torch.nn.Identity(), images, t, generator=seeded(2)))
