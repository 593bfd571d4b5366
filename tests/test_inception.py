"""Inception v3: the ReLU rewiring, the paper's block order, randomization, the weights loader.

Pretrained weights cannot be downloaded in CI, so the loader is tested on a weights file the
test writes from a randomly initialized model, through the same code path as the real file.
Inputs are 75 x 75 (Inception's smallest) to keep the tests fast.
"""

from __future__ import annotations

import copy
import hashlib
import urllib.request

import pytest
import torch
from torch import nn
from torchvision.models import inception_v3

from saliency_sanity.data import download as data_module
from saliency_sanity.models import inception
from saliency_sanity.data import ChecksumError
from saliency_sanity.models.inception import (
    BLOCKS,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    InceptionV3,
    WeightsError,
    build_inception,
    fetch_weights,
    load_weights,
)
from saliency_sanity.methods import available_methods, get_method
from saliency_sanity.models import build_model, load_checkpoint, save_checkpoint
from saliency_sanity.randomization import cascading, independent

PAPER_BLOCKS = [
    "Logits", "Mixed_7c", "Mixed_7b", "Mixed_7a", "Mixed_6e", "Mixed_6d", "Mixed_6c", "Mixed_6b", "Mixed_6a",
    "Mixed_5d", "Mixed_5c", "Mixed_5b", "Conv2d_4a_3x3", "Conv2d_3b_1x1", "Conv2d_2b_3x3", "Conv2d_2a_3x3",
    "Conv2d_1a_3x3",
]


@pytest.fixture(scope="module")
def model() -> InceptionV3:
    return build_model("inception_v3", seed=0).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def target(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


@pytest.fixture(scope="module")
def weights_file(model, tmp_path_factory):
    """A torchvision-style checkpoint (a plain state dict) named with its sha256 prefix."""
    folder = tmp_path_factory.mktemp("weights")
    tmp = folder / "state.pth"
    torch.save(model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"inception_v3_test-{digest[:8]}.pth"
    tmp.rename(path)
    return path, digest


def test_rewired_model_has_torchvisions_keys_and_logits(model, x):
    stock = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True).eval()
    stock.load_state_dict(model.state_dict())  # strict: same keys and shapes
    with torch.no_grad():
        torch.testing.assert_close(model(x), stock(x), rtol=0, atol=0)


def test_every_relu_is_its_own_non_inplace_module(model):
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    convs = [m for m in model.modules() if isinstance(m, inception.ConvBNReLU)]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert len(relus) == len(convs) == n_convs == 96  # one per convolution, Aux classifier included
    assert len({id(r) for r in relus}) == len(relus) and not any(r.inplace for r in relus)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # stem x 2, Mixed_6a and Mixed_7a branches: DeepLIFT's max-pool rule applies


def test_guided_backprop_and_deconvnet_differ_from_the_gradient(model, x, target):
    grad = get_method("gradient")(model, x, target)
    for name in ("guided_backprop", "deconvnet"):
        other = get_method(name)(model, x, target)
        assert (other - grad).abs().max() > 1e-3 * grad.abs().max(), name
    # torchvision's stock model, in-place F.relu: guided backprop silently equals the gradient
    stock = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True).eval()
    stock.load_state_dict(model.state_dict())
    torch.testing.assert_close(get_method("guided_backprop")(stock, x, target), get_method("gradient")(stock, x, target))


def test_blocks_are_the_papers_17_from_the_logits_down(model):
    assert [("Logits" if b == "fc" else b) for b in model.block_names] == PAPER_BLOCKS
    covered = {id(p) for name in model.block_names for p in model.block(name).parameters()}
    aux = {id(p) for p in model.AuxLogits.parameters()}
    assert covered | aux == {id(p) for p in model.parameters()}  # every trainable weight on the inference path
    assert model.gradcam_layer is model.Mixed_7c
    assert not any(k.startswith("gradcam_layer") for k in model.state_dict())


@pytest.mark.parametrize("reset", [False, True])
def test_randomizing_a_block_changes_only_it_and_keeps_bn_statistics_by_default(model, reset):
    trained = copy.deepcopy(model)
    trained.reset_bn_statistics = reset
    for m in trained.modules():  # running statistics unlike the defaults, as in a trained model
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    before = trained.state_dict()
    names = []
    for index, name, stage in independent(trained, seed=1):
        names.append(name)
        if index not in (1, 2, len(BLOCKS)):
            continue
        after = stage.state_dict()
        prefix = f"{name}."
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all(k.startswith(prefix) for k in changed), name
        stats = [k for k in after if k.startswith(prefix) and k.endswith(("running_mean", "running_var"))]
        if name != "fc":
            assert stats
            kept = all(torch.equal(before[k], after[k]) for k in stats)
            assert kept != reset
            if reset:
                assert all(torch.all(after[k] == (1.0 if k.endswith("var") else 0.0)) for k in stats)
    assert names == ["original", *BLOCKS]


def test_cascading_stage_k_randomizes_the_k_top_blocks(model):
    stages = cascading(model, seed=1)
    before = model.state_dict()
    for index, name, stage in stages:
        if index == 3:
            after = stage.state_dict()
            changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
            assert changed == set(BLOCKS[:3])
            break


@pytest.mark.parametrize("name", available_methods())
def test_every_registered_method_runs_on_inception(name, model, x, target):
    method = get_method(name)
    assert method.applies_to(model)
    params = {k: v for k, v in {"steps": 2, "n_samples": 2}.items() if k in method.accepts()}
    if method.stochastic:
        params["generator"] = torch.Generator().manual_seed(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = method(model, x, target, **params)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("rule", ["deeplift_rescale", "deeplift_revealcancel"])
def test_deeplift_sums_to_the_logit_difference(rule, model, x, target):
    double = build_model("inception_v3", seed=0).double().eval()
    xd = x.double()
    attributions = get_method(rule)(double, xd, target)
    with torch.no_grad():
        delta = double(xd)[range(2), target] - double(torch.zeros_like(xd))[range(2), target]
    torch.testing.assert_close(attributions.flatten(1).sum(1), delta, rtol=1e-9, atol=0)


# ------------------------------------------------------------------ weights


def test_a_torchvision_style_weights_file_loads_through_the_hash_check(weights_file, model, x):
    path, digest = weights_file
    loaded = load_weights(path)  # the 8-digit prefix in the file name is checked
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    built, record = build_inception(str(path), sha256=digest)  # a local path with its full sha256
    assert record["weights_sha256"] == digest and record["pretrained"]


def test_a_wrong_hash_names_the_file_and_both_hashes(weights_file):
    path, digest = weights_file
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        load_weights(path, sha256=wrong)
    assert str(path) in str(err.value) and digest in str(err.value) and wrong in str(err.value)
    renamed = path.with_name("inception_v3_google-0cc3c7bd.pth")  # torchvision's name, other content
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ChecksumError, match="0cc3c7bd"):
        load_weights(renamed)


def test_a_file_that_is_no_weights_at_all_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights")
    with pytest.raises(WeightsError, match="not a weights file") as err:
        load_weights(path)
    assert "weights_only" not in str(err.value) and str(path) in str(err.value)


def test_weights_no_hash_vouches_for_are_recorded_as_unverified_not_pretrained(weights_file, tmp_path):
    path, digest = weights_file
    unnamed = tmp_path / "my-inception.pth"  # no torchvision hash prefix, no weights_sha256
    unnamed.write_bytes(path.read_bytes())
    _, record = build_inception(str(unnamed))
    assert record["weights_verified"] is False and record["pretrained"] is None and record["weights_sha256"] == digest
    _, record = build_inception(str(unnamed), sha256=digest)
    assert record["weights_verified"] is True and record["pretrained"] is True


def test_a_file_that_is_not_an_inception_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(WeightsError, match="not a torchvision Inception v3 checkpoint"):
        load_weights(path)


def test_weights_come_from_the_mirror_with_their_hash_checked(weights_file, tmp_path, monkeypatch):
    path, digest = weights_file
    mirror = tmp_path / "mirror"
    (mirror / "imagenet" / "weights").mkdir(parents=True)
    (mirror / "imagenet" / "weights" / WEIGHTS_FILE).write_bytes(path.read_bytes())
    monkeypatch.delenv(data_module.MIRROR_ENV, raising=False)
    target = fetch_weights("torchvision", tmp_path / "data", sha256=digest, mirror=mirror)
    assert target == tmp_path / "data" / "imagenet" / "weights" / WEIGHTS_FILE
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    with pytest.raises(ChecksumError):  # the real file's hash prefix (in its name) does not match
        fetch_weights("torchvision", tmp_path / "other", mirror=mirror)
    assert not list((tmp_path / "other" / "imagenet" / "weights").iterdir())  # nothing half-written


def test_no_weights_and_no_network_names_the_url_the_path_and_the_config_key(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv(data_module.MIRROR_ENV, raising=False)
    with pytest.raises(WeightsError) as err:
        fetch_weights("torchvision", tmp_path, retries=1)
    message = str(err.value)
    assert WEIGHTS_URL in message and "imagenet.models.inception_v3.weights" in message
    assert str(tmp_path / "imagenet" / "weights" / WEIGHTS_FILE) in message
    with pytest.raises(WeightsError, match="imagenet.models.inception_v3.weights"):
        fetch_weights(str(tmp_path / "missing.pth"), tmp_path)


def test_random_weights_are_seeded_and_survive_a_checkpoint(tmp_path, x):
    a, record = build_inception("random", seed=3)
    b, _ = build_inception("random", seed=3)
    assert record == {"weights": "random", "weights_seed": 3, "pretrained": False}
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    save_checkpoint(a, tmp_path / "m.pt", {"dataset": "imagenet", "arch": "inception_v3"})
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(loaded, InceptionV3) and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), a(x), rtol=0, atol=0)


def test_auto_weights_are_torchvisions_when_in_place_else_the_model_is_left_out(tmp_path, monkeypatch):
    from saliency_sanity.models.published import imagenet_runs

    monkeypatch.setattr(inception, "reachable", lambda url, timeout=5: False)  # offline
    monkeypatch.delenv(data_module.MIRROR_ENV, raising=False)
    section = {"enabled": True, "models": {"efficientnet_lite0": {"weights": "package"},
                                           "inception_v3": {"weights": "auto", "weights_sha256": None}}}
    runs = imagenet_runs(section, tmp_path / "data")
    assert list(runs.models) == ["efficientnet_lite0"]
    assert "imagenet.models.inception_v3.weights" in runs.left_out["inception_v3"]
    mirrored = tmp_path / "mirror" / "imagenet" / "weights" / WEIGHTS_FILE
    mirrored.parent.mkdir(parents=True)
    mirrored.write_bytes(b"")
    assert imagenet_runs(section, tmp_path / "data", tmp_path / "mirror").models["inception_v3"]["weights"] == "torchvision"
    monkeypatch.setattr(inception, "reachable", lambda url, timeout=5: url == WEIGHTS_URL)  # online
    assert imagenet_runs(section, tmp_path / "data").models["inception_v3"]["weights"] == "torchvision"
    explicit = {**section, "models": {"inception_v3": {"weights": "torchvision"}, "efficientnet_lite0": None}}
    assert imagenet_runs(explicit, tmp_path).models == {"inception_v3": {"weights": "torchvision"}}  # fails at build
    assert imagenet_runs({**section, "enabled": False}, tmp_path) == type(runs)()
