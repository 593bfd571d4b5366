"""Work shared between methods within one stage (methods/reuse.py).

Inside ``shared_work()``, SmoothGrad, SmoothGrad-squared and VarGrad reduce one set of samples
(n_samples base passes per image in all, not three times that) and Guided Grad-CAM reuses the
Guided Backprop and Grad-CAM maps, and Gradient x Input reuses the gradient; the values are those of the uncached methods. Outside it,
nothing is cached.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import torch

from saliency_sanity.harness import Harness
from saliency_sanity.methods import get_method
from saliency_sanity.methods.gradients import gradient
from saliency_sanity.methods.reuse import Memo, active_memo, memoize, shared_work
from saliency_sanity.methods.smoothing import noisy_copies, relative_sigma

SMOOTHINGS = ("smoothgrad", "smoothgrad_squared", "vargrad")
N_SAMPLES, NOISE = 4, 0.15


@pytest.fixture
def cnn(shipped_models):
    return shipped_models["cnn"]


@pytest.fixture
def target(cnn, images):
    with torch.no_grad():
        return cnn(images).argmax(dim=1)


class Passes:
    """Examples that went through the model's forward (one per input row of each call)."""

    def __init__(self) -> None:
        self.examples = 0


@contextmanager
def counting(model: torch.nn.Module) -> Iterator[Passes]:
    passes = Passes()

    def hook(module, inputs):
        passes.examples += inputs[0].shape[0]

    handle = model.register_forward_pre_hook(hook)
    try:
        yield passes
    finally:
        handle.remove()


def generator(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smoothing(name, model, x, target, seed=7, **params):
    params = {"n_samples": N_SAMPLES, "noise_level": NOISE, **params}
    return get_method(name)(model, x, target, generator=generator(seed), **params)


def reference_samples(model, x, target, seed=7) -> torch.Tensor:
    """The gradients of the noisy copies the smoothing methods draw: (images, n_samples, ...)."""
    noisy = noisy_copies(x, relative_sigma(x, NOISE), N_SAMPLES, generator(seed))
    grads = gradient(model, noisy, target.repeat_interleave(N_SAMPLES))
    return grads.view(len(x), N_SAMPLES, *x.shape[1:]).double()


def test_smoothings_share_one_set_of_samples(cnn, images, target):
    with shared_work(), counting(cnn) as passes:
        for name in SMOOTHINGS:
            smoothing(name, cnn, images, target)
    assert passes.examples == len(images) * N_SAMPLES  # not 3x


def test_shared_smoothings_equal_the_reductions_of_the_same_samples(cnn, images, target):
    with shared_work():
        shared = {name: smoothing(name, cnn, images, target) for name in SMOOTHINGS}
    samples = reference_samples(cnn, images, target)
    expected = {
        "smoothgrad": samples.mean(dim=1),
        "smoothgrad_squared": samples.square().mean(dim=1),
        "vargrad": samples.var(dim=1, correction=0),
    }
    for name in SMOOTHINGS:
        uncached = smoothing(name, cnn, images, target)
        torch.testing.assert_close(shared[name], uncached, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(shared[name].double(), expected[name], rtol=1e-5, atol=1e-7)
        assert shared[name].dtype == images.dtype
    assert (shared["vargrad"] >= 0).all()
    assert shared["vargrad"].abs().sum() > 0


def test_batch_size_does_not_change_the_shared_smoothings(cnn, images, target):
    results = []
    for batch_size in (None, 5, N_SAMPLES * 2):
        with shared_work():
            results.append({name: smoothing(name, cnn, images, target, batch_size=batch_size) for name in SMOOTHINGS})
    for other in results[1:]:
        for name in SMOOTHINGS:
            torch.testing.assert_close(other[name], results[0][name], rtol=1e-5, atol=1e-7)


def test_a_shared_result_leaves_the_generator_where_drawing_leaves_it(cnn, images, target):
    drawn = generator()
    get_method("smoothgrad")(cnn, images, target, n_samples=N_SAMPLES, noise_level=NOISE, generator=drawn)
    with shared_work():
        first, second = generator(), generator()
        get_method("smoothgrad")(cnn, images, target, n_samples=N_SAMPLES, noise_level=NOISE, generator=first)
        get_method("vargrad")(cnn, images, target, n_samples=N_SAMPLES, noise_level=NOISE, generator=second)
    assert torch.equal(first.get_state(), drawn.get_state())
    assert torch.equal(second.get_state(), drawn.get_state())


@pytest.mark.parametrize("change", ["seed", "noise_level", "n_samples", "target", "inputs"])
def test_anything_that_changes_the_samples_is_not_shared(cnn, images, target, change):
    other = {
        "seed": {"seed": 8},
        "noise_level": {"noise_level": 0.3},
        "n_samples": {"n_samples": N_SAMPLES + 1},
        "target": {"target": (target + 1) % 10},
        "inputs": {"x": images.clone()},
    }[change]
    with shared_work(), counting(cnn) as passes:
        smoothing("smoothgrad", cnn, images, target)
        args = {"x": images, "target": target, **other}
        x, t = args.pop("x"), args.pop("target")
        changed = smoothing("vargrad", cnn, x, t, **args)
    n = other.get("n_samples", N_SAMPLES)
    assert passes.examples == len(images) * (N_SAMPLES + n)
    torch.testing.assert_close(changed, smoothing("vargrad", cnn, x, t, **args))


def test_an_input_changed_in_place_is_not_taken_for_the_old_one(cnn, images, target):
    x = images.clone()
    with shared_work(), counting(cnn) as passes:
        smoothing("smoothgrad", cnn, x, target)
        x.mul_(0.5)
        smoothing("smoothgrad", cnn, x, target)
    assert passes.examples == 2 * len(images) * N_SAMPLES


def test_ig_smoothgrad_keeps_its_own_noise():
    assert {get_method(name).noise_key for name in SMOOTHINGS} == {"gradient_noise"}
    assert get_method("ig_smoothgrad").noise_key == "ig_smoothgrad"
    assert get_method("gradient").noise_key == "gradient"


def test_the_harness_seeds_the_smoothings_alike():
    harness = Harness(seed=3)

    def state(name: str, stage: int = 1) -> torch.Tensor:
        bound = harness.bind(get_method(name), stage)
        return bound.context.generator(bound.method.noise_key, "cpu").get_state()

    assert all(torch.equal(state(name), state("smoothgrad")) for name in SMOOTHINGS)
    assert not torch.equal(state("ig_smoothgrad"), state("smoothgrad"))
    assert not torch.equal(state("smoothgrad", 2), state("smoothgrad"))


def test_guided_gradcam_reuses_its_factors(cnn, images, target):
    outside = get_method("guided_gradcam")(cnn, images, target)
    with shared_work():
        guided = get_method("guided_backprop")(cnn, images, target)
        cam = get_method("gradcam")(cnn, images, target, batch_size=2)
        with counting(cnn) as passes:
            inside = get_method("guided_gradcam")(cnn, images, target)
    assert passes.examples == 0
    torch.testing.assert_close(inside, outside)  # Grad-CAM ran in batches of 2 here: float rounding may differ by CPU
    torch.testing.assert_close(inside, guided * cam)


@pytest.mark.parametrize("first", ["gradient", "gradient_x_input"])
def test_gradient_and_gradient_x_input_share_one_backward_pass(cnn, images, target, first):
    second = ({"gradient", "gradient_x_input"} - {first}).pop()
    outside = {name: get_method(name)(cnn, images, target) for name in (first, second)}
    with shared_work(), counting(cnn) as passes:
        inside = {name: get_method(name)(cnn, images, target, batch_size=3) for name in (first, second)}
    assert passes.examples == len(images)
    assert all(torch.equal(inside[name], outside[name]) for name in outside)
    torch.testing.assert_close(inside["gradient_x_input"], inside["gradient"] * images)


def test_guided_gradcam_alone_in_shared_work_computes_its_factors_once(cnn, images, target):
    with shared_work(), counting(cnn) as passes:
        inside = get_method("guided_gradcam")(cnn, images, target)
        get_method("guided_backprop")(cnn, images, target)
        get_method("gradcam")(cnn, images, target)
    assert passes.examples == 2 * len(images)
    assert torch.equal(inside, get_method("guided_gradcam")(cnn, images, target))


def test_a_caller_changing_its_map_does_not_change_the_shared_one(cnn, images, target):
    with shared_work():
        first = get_method("guided_backprop")(cnn, images, target)
        expected = first.clone()
        first.zero_()
        torch.testing.assert_close(get_method("guided_backprop")(cnn, images, target), expected)
        smooth = smoothing("smoothgrad", cnn, images, target)
        expected = smooth.clone()
        smooth.zero_()
        torch.testing.assert_close(smoothing("smoothgrad", cnn, images, target), expected)


def test_outside_shared_work_nothing_is_cached(cnn, images, target):
    with counting(cnn) as passes:
        first = smoothing("smoothgrad", cnn, images, target)
        second = smoothing("smoothgrad", cnn, images, target)
        get_method("guided_backprop")(cnn, images, target)
        get_method("guided_gradcam")(cnn, images, target)
    assert passes.examples == 2 * len(images) * N_SAMPLES + 3 * len(images)
    assert torch.equal(first, second)
    calls = []
    assert memoize(("k",), lambda: calls.append(1)) is None
    memoize(("k",), lambda: calls.append(1))
    assert calls == [1, 1]


def test_the_memo_is_dropped_on_exit(cnn, images, target):
    assert active_memo() is None
    with shared_work() as memo:
        assert active_memo() is memo
        smoothing("smoothgrad", cnn, images, target)
        get_method("gradcam")(cnn, images, target)
        assert len(memo) == 2 and memo.pinned
        with shared_work() as inner:  # a nested scope joins the open one
            assert inner is memo
        assert len(memo) == 2
    assert active_memo() is None
    assert len(memo) == 0 and not memo.pinned


def test_a_kept_memo_outlives_its_activations_until_cleared():
    memo, calls = Memo(), []
    for _ in range(2):
        with shared_work(memo):
            memoize(("k", 1), lambda: calls.append(1) or len(calls))
    assert calls == [1] and (memo.hits, memo.misses) == (1, 1)
    assert active_memo() is None
    memo.clear()
    assert len(memo) == 0


def test_keys_stand_for_objects_by_identity_and_pin_them():
    memo = Memo()
    x = torch.zeros(3)
    assert memo.token((x.detach(), 1, "a")) == memo.token((x, 1, "a"))  # same storage: same key
    assert memo.token((torch.zeros(3),)) != memo.token((x,))
    assert memo.token(({"b": 1, "a": x},)) == memo.token(({"a": x, "b": 1},))
    assert id(x) in memo.pinned
    with pytest.raises(TypeError, match="generator"):
        memo.token((torch.Generator(),))


def test_the_runner_shares_work_within_each_stage_and_logs_it(cnn, images, caplog):
    from tqdm import tqdm

    from saliency_sanity.data import Examples
    from saliency_sanity.randomization import ModeInputs, Settings, mode_spec, run_stages

    names = [*SMOOTHINGS, "guided_backprop", "gradcam", "guided_gradcam"]
    settings = Settings.from_config({
        "seed": 0, "randomization": {"n_images": len(images), "batch_size": 5},
        "methods": {name: {"n_samples": N_SAMPLES} for name in SMOOTHINGS},
    })
    harness = Harness(settings.method_params, methods=names, seed=0, batch_size=5)
    stages = [stage for _, stage in zip(range(2), mode_spec("cascading").stages(cnn, ModeInputs(seed=0)))]
    examples = Examples(images, torch.zeros(len(images), dtype=torch.long))
    with counting(stages[0].model) as first, counting(stages[1].model) as second, caplog.at_level("INFO"):
        result = run_stages(iter(stages), harness, harness.applicable(cnn), examples, settings, "max",
                            tqdm(disable=True))
    # per stage: the predictions, one set of smoothing samples, guided backprop and Grad-CAM once each
    assert first.examples == second.examples == len(images) * (1 + N_SAMPLES + 2)
    assert active_memo() is None
    assert len(result.stages) == 2
    reused = {r.getMessage().split(":")[0] for r in caplog.records if "reused" in r.getMessage()}
    assert reused == {"smoothgrad_squared", "vargrad", "guided_gradcam"}
