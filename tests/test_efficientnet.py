"""EfficientNet-Lite0 with its published weights: the exact mapping onto timm's architecture, the
logits against timm's own forward pass, real-weight predictions on bundled photos, the blocks,
the initializer, and the ReLU6 rules of the hook-based methods on hand-computed values."""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
from torch import nn

from saliency_sanity.data import ChecksumError
from saliency_sanity.data.images import load_images
from saliency_sanity.methods import get_method
from saliency_sanity.models import ReLU6, build_model, load_checkpoint, model_spec
from saliency_sanity.models.efficientnet import (
    BLOCKS,
    PREPROCESSING,
    WEIGHTS_SHA256,
    EfficientNetLite0,
    build_efficientnet_lite0,
    load_weights,
    map_state_dict,
    package_weights,
)
from saliency_sanity.models.published import write_published_checkpoint
from saliency_sanity.models.weights import WeightsError


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    return torch.load(package_weights(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return build_efficientnet_lite0("package")[0]


def test_the_package_file_is_the_published_one_and_maps_exactly(published):
    import hashlib

    assert hashlib.sha256(package_weights().read_bytes()).hexdigest() == WEIGHTS_SHA256
    target = EfficientNetLite0().state_dict()
    mapped = map_state_dict(published, target)
    assert len(published) == len(target) == len(mapped) == 296  # every tensor placed, none left over
    assert list(mapped) == list(target)
    assert all(mapped[key].shape == target[key].shape for key in target)
    assert sum(t.numel() for k, t in mapped.items() if "running" not in k and "num_batches" not in k) \
        == pytest.approx(4.69e6, rel=0.01)
    fewer = dict(list(published.items())[:-1])
    with pytest.raises(WeightsError, match="295 tensors"):
        map_state_dict(fewer, target)
    swapped = dict(published)
    first, second = list(published)[:2]  # the stem's convolution weight and its BatchNorm weight
    swapped[first], swapped[second] = published[second], published[first]
    with pytest.raises(WeightsError, match="does not fit"):
        map_state_dict(swapped, target)


def test_logits_equal_timms_forward_pass_with_the_same_weights(model, published):
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    reference.load_state_dict(map_state_dict(published, reference.state_dict()))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert not any(isinstance(m, nn.ReLU6) or getattr(m, "inplace", False) for m in model.modules())
    assert sum(isinstance(m, ReLU6) for m in model.modules()) == 33  # stem, 2 per MBConv block (1 in the first), head


def test_real_weights_classify_bundled_photos():
    recipe = model_spec("efficientnet_lite0").image_preprocessing
    photos = load_images("skimage", recipe=recipe)
    assert photos.images.shape[-1] == 224 and photos.images.min() >= -1 and photos.images.max() <= 1
    model = build_efficientnet_lite0("package")[0]
    with torch.no_grad():
        top5 = model(photos.images).topk(5).indices
    correct = (top5[:, 0] == photos.labels).sum().item()
    assert correct >= 3  # espresso, missile, tripod first; the tabby among the top 5 (after tiger cat)
    assert all(label in row for label, row in zip(photos.labels.tolist(), top5.tolist()))


def test_blocks_run_top_down_and_batchnorm_statistics_are_kept_unless_reset(model):
    assert BLOCKS[:2] == ("classifier", "conv_head") and BLOCKS[-1] == "conv_stem"
    assert BLOCKS[2:-1] == tuple(f"blocks.{s}.{i}" for s, n in reversed(list(enumerate((1, 2, 2, 3, 3, 4, 1))))
                                 for i in reversed(range(n)))
    assert len(BLOCKS) == 19
    head_bn = model.conv_head[1]
    for reset in (False, True):
        copied = copy.deepcopy(model)
        copied.reset_bn_statistics = reset
        copied.init_block("conv_head", torch.Generator().manual_seed(0))
        assert torch.equal(copied.conv_head[1].running_var, head_bn.running_var) != reset
        assert torch.equal(copied.conv_head[1].weight, torch.ones_like(head_bn.weight))
    assert model.gradcam_layer is model.conv_head
    with torch.no_grad():
        features = model.conv_stem(torch.zeros(1, 3, 224, 224))
        assert model.conv_head(model.blocks(features)).shape == (1, 1280, 7, 7)


def test_reinitialization_follows_the_tensorflow_initializer():
    model = build_model("efficientnet_lite0", seed=0)
    conv = model.conv_head[0]  # 1 x 1 x 320 -> 1280: fan_out 1280
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 1280), rel=0.02)
    depthwise = model.get_submodule("blocks.5.0.conv_dw")  # 5 x 5 depthwise: fan_out 25
    assert depthwise.weight.std().item() == pytest.approx(math.sqrt(2 / 25), rel=0.05)
    bound = 1 / math.sqrt(1000)
    assert model.classifier.weight.abs().max().item() <= bound
    assert model.classifier.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert not model.classifier.bias.any()


def test_weights_are_checked_and_the_checkpoint_round_trips(tmp_path, model):
    wrong = tmp_path / "other.pth"
    torch.save({"a": torch.zeros(1)}, wrong)
    with pytest.raises(ChecksumError, match="weights_sha256"):
        load_weights(wrong)
    with pytest.raises(WeightsError, match="296"):
        load_weights(wrong, sha256=None)
    with pytest.raises(WeightsError, match="does not exist"):
        build_efficientnet_lite0(str(tmp_path / "missing.pth"))
    out = tmp_path / "imagenet-efficientnet_lite0.pt"
    record = write_published_checkpoint("efficientnet_lite0", {"seed": 0, "weights": "package"}, tmp_path, out)
    assert record["pretrained"] and record["weights_sha256"] == WEIGHTS_SHA256 and record["arch"] == "efficientnet_lite0"
    loaded = load_checkpoint(out)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    untrained, record = build_efficientnet_lite0("random", seed=3)
    assert not record["pretrained"]
    assert torch.equal(untrained.classifier.weight, build_efficientnet_lite0("random", seed=3)[0].classifier.weight)


def test_preprocessing_is_the_models_own():
    assert (PREPROCESSING.crop, PREPROCESSING.resize, PREPROCESSING.interpolation) == (224, 256, "bicubic")
    assert PREPROCESSING.mean == PREPROCESSING.std == (0.5, 0.5, 0.5)  # inputs in [-1, 1]: zero is mid grey


# --------------------------------------------------------------------------- ReLU6 under the hook-based rules


def relu6_network() -> nn.Module:
    """f(x) = w . ReLU6(x) with w = (1, 2, -1, 3): the identity layer in front makes ReLU6 a hooked module."""
    first = nn.Linear(4, 4, bias=False)
    last = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        last.weight.copy_(torch.tensor([[1.0, 2.0, -1.0, 3.0]]))
    return nn.Sequential(first, ReLU6(), last).eval()


# x = (-1, 3, 4, 8): below 0, active with a positive and a negative weight, saturated above 6
X = torch.tensor([[-1.0, 3.0, 4.0, 8.0]])
TARGET = torch.zeros(1, dtype=torch.long)
EXPECTED = {
    "gradient": [0.0, 2.0, -1.0, 0.0],  # w where 0 < x < 6
    "guided_backprop": [0.0, 2.0, 0.0, 0.0],  # and only the positive part of it
    "deconvnet": [1.0, 2.0, 0.0, 3.0],  # the positive part of w, whatever x
    "deeplift_rescale": [0.0, 6.0, -4.0, 18.0],  # w * ReLU6(x): multipliers ReLU6(x) / x, zero reference
    "deeplift_revealcancel": [0.0, 6.0, -4.0, 18.0],  # one term per unit: nothing cancels, so Rescale's values
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_relu6_rules_match_hand_computed_values(method):
    network = relu6_network()
    maps = get_method(method)(network, X, TARGET)
    torch.testing.assert_close(maps, torch.tensor([EXPECTED[method]]))
    if method.startswith("deeplift"):  # summation-to-delta: f(x) - f(0) = 0 + 6 - 4 + 18
        assert maps.sum().item() == pytest.approx(network(X).item() - network(torch.zeros_like(X)).item())


@pytest.mark.parametrize("rule", ["deeplift_rescale", "deeplift_revealcancel"])
def test_deeplift_sums_to_the_logit_difference_with_the_published_weights(rule, model):
    """Every ReLU6 sits after a convolution and a BatchNorm (timm's BatchNormAct2d): RevealCancel splits each."""
    double = copy.deepcopy(model).double().eval()
    x, target = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64), \
        torch.tensor([1, 2])
    contributions = get_method(rule)(double, x, target)
    with torch.no_grad():
        delta = double(x)[range(2), target] - double(torch.zeros_like(x))[range(2), target]
    torch.testing.assert_close(contributions.flatten(1).sum(1), delta, rtol=1e-9, atol=1e-12)
