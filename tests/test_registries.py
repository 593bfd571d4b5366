"""Registry-wide tests: every dataset, model, baseline, similarity metric and randomization mode is
checked against its contract, so an entry added later is tested with no edit here. And the generic
:class:`~saliency_sanity.registry.Registry` they all use."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from saliency_sanity import similarity
from saliency_sanity.baselines import BASELINES, make_baseline
from saliency_sanity.context import Context, ValidRange
from saliency_sanity.data import DATASETS, DataSource, load_examples, raw_dir, write_idx
from saliency_sanity.data.registry import IDX_SPLITS
from saliency_sanity.models import MODELS, SanityModel, build_model
from saliency_sanity.randomization import MODES, ModeInputs
from saliency_sanity.registry import Registry, UnknownNameError

# --------------------------------------------------------------------------- the registry type


def test_registry_names_unknown_entries_the_config_key_and_the_registered_ones():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    registry.add("b", 2)
    assert registry["a"] == 1 and list(registry) == ["a", "b"] and "b" in registry and len(registry) == 2
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c' \(config key widgets.c\); registered: a, b"):
        registry.get_entry("c", "widgets.c")
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.add("a", 3)


def test_registry_scopes_restore_the_entries():
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    with registry.added("t", 9):
        assert registry.names() == ["a", "t"]
    with registry.isolated():
        assert registry.names() == []
        registry.add("only", 0)
    assert registry.names() == ["a"]


# --------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def fake_downloads(tmp_path_factory) -> Path:
    """Every downloaded dataset's files in its registered layout, contents random: tiny IDX files, or
    small photos (JPEG or PNG by the file name)."""
    import PIL.Image

    data_dir = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, spec in DATASETS.items():
        if not spec.downloaded:
            continue
        folder = raw_dir(name, data_dir)
        folder.mkdir(parents=True)
        if not set(spec.files) & {file for pair in IDX_SPLITS.values() for file in pair}:
            for file in spec.files:
                PIL.Image.fromarray(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(folder / file)
            continue
        for images_file, labels_file in IDX_SPLITS.values():
            write_idx(folder / images_file, rng.integers(0, 256, (12, 28, 28)).astype(np.uint8))
            write_idx(folder / labels_file, (np.arange(12) % spec.num_classes).astype(np.uint8))
    return data_dir


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_to_the_examples_contract(name, fake_downloads):
    spec = DATASETS[name]
    assert spec.num_classes >= 2 and spec.splits and spec.description
    assert spec.downloaded or spec.depends_on or not spec.files
    for base in spec.depends_on:
        assert base in DATASETS
    for md5 in spec.files.values():
        assert len(md5) == 32 and int(md5, 16) >= 0
    options = {"sources": ["skimage", "demo"], "size": 75} if name == "imagenet" else {"size": 75}
    source = DataSource(fake_downloads, seed=3, options=options, n=2)
    for split in spec.splits:
        examples = load_examples(name, split, source)
        again = load_examples(name, split, source)
        assert examples.images.dtype == torch.float32 and examples.images.dim() >= 3
        assert examples.labels.dtype == torch.int64 and len(examples.labels) == len(examples.images) == 2
        assert 0 <= int(examples.labels.min()) and int(examples.labels.max()) < spec.num_classes
        assert torch.equal(examples.images, again.images) and torch.equal(examples.labels, again.labels)


def test_the_label_permuted_datasets_keep_images_and_class_counts(fake_downloads):
    for base in ("mnist", "fashion-mnist"):
        source = DataSource(fake_downloads, seed=1)
        original, permuted = load_examples(base, "train", source), load_examples(f"{base}-permuted-labels", "train", source)
        assert torch.equal(original.images, permuted.images)
        assert torch.equal(original.labels.bincount(), permuted.labels.bincount())
        assert not torch.equal(original.labels, permuted.labels)


def test_a_dataset_split_too_small_or_unknown_is_a_clear_error(fake_downloads):
    with pytest.raises(ValueError, match="100 examples were asked of the test split of 'mnist', which has 12"):
        load_examples("mnist", "test", DataSource(fake_downloads, n=100))
    with pytest.raises(ValueError, match="no split 'train'"):
        load_examples("imagenet", "train", DataSource(fake_downloads))
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar'"):
        load_examples("cifar", "test")


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def built_models() -> dict[str, SanityModel]:
    return {arch: build_model(arch, seed=0).eval() for arch in MODELS}


def _parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_model_follows_the_model_contract(arch, built_models):
    spec, model = MODELS[arch], built_models[arch]
    assert isinstance(model, SanityModel) and model.arch == arch
    assert spec.datasets and all(d in DATASETS for d in spec.datasets) and spec.preprocessing and spec.weights
    x = torch.rand(2, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, max(DATASETS[d].num_classes for d in spec.datasets))
    # every nonlinearity is its own module, never in-place and never reused within a forward pass
    calls: dict[nn.Module, int] = {}
    activations = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Tanh))]
    assert activations and not any(getattr(m, "inplace", False) for m in activations)
    handles = [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(mod, calls.get(mod, 0) + 1))
               for m in activations]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    assert set(calls.values()) == {1}
    layer = model.gradcam_layer
    assert layer is None or any(layer is m for m in model.modules())


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_models_blocks_reinitialize_only_themselves_reproducibly(arch, built_models):
    model = built_models[arch]
    assert model.block_names and len(set(model.block_names)) == len(model.block_names)
    for name in model.block_names[:1] + model.block_names[-1:]:  # the logits and the input-most block
        copy_a, copy_b = copy.deepcopy(model), copy.deepcopy(model)
        before = {n: p.detach().clone() for n, p in copy_a.named_parameters()}
        copy_a.init_block(name, torch.Generator().manual_seed(5))
        copy_b.init_block(name, torch.Generator().manual_seed(5))
        block_params = {f"{name}.{n}" for n, _ in copy_a.block(name).named_parameters()}
        changed = {n for n, p in copy_a.named_parameters() if not torch.equal(p, before[n])}
        assert changed and changed <= block_params, (name, changed - block_params)
        for (n, p), q in zip(copy_a.named_parameters(), copy_b.parameters()):
            assert torch.equal(p, q), n  # the same generator, the same draw


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("name", BASELINES.names())
def test_every_baseline_is_in_the_valid_range_of_input_space_and_seeded(name):
    """On 3-channel inputs with a different valid range per channel (as a normalized ImageNet model has)."""
    valid = ValidRange((-1.0, -2.0, 0.0), (1.0, 0.5, 3.0))
    low, high = (torch.tensor(v).view(1, 3, 1, 1) for v in (valid.low, valid.high))
    x = low + (high - low) * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    train = low + (high - low) * torch.rand(20, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    context = Context(seed=4, train_data=train, valid_range=valid)
    baseline = make_baseline(name, x, context)
    assert baseline.shape == x.shape and baseline.dtype == x.dtype and torch.isfinite(baseline).all()
    assert ((baseline >= low - 1e-6) & (baseline <= high + 1e-6)).all()
    assert torch.equal(baseline, make_baseline(name, x, context))
    assert torch.equal(baseline, make_baseline(name, x, context.at_stage(3)))  # the same draw at every stage
    if BASELINES[name].stochastic:
        assert not torch.equal(baseline, make_baseline(name, x, Context(seed=5, train_data=train, valid_range=valid)))
    with pytest.raises(UnknownNameError, match="methods.integrated_gradients.baseline"):
        make_baseline(name + "_nope", x, context, "methods.integrated_gradients.baseline")


# --------------------------------------------------------------------------- similarity metrics


@pytest.mark.parametrize("name", similarity.METRICS.names())
def test_every_metric_scores_each_image_and_ranks_identity_first(name):
    rng = np.random.default_rng(0)
    maps = rng.random((4, 1, 16, 16)) * np.linspace(0, 1, 16)  # structured: a ramp
    noise = rng.standard_normal((4, 1, 16, 16))
    prepared = {k: similarity.prepare(v, hog_pixels_per_cell=4) for k, v in (("maps", maps), ("noise", noise))}
    same = similarity.compare(prepared["maps"], similarity.prepare(maps.copy(), hog_pixels_per_cell=4), [name])[name]
    other = similarity.compare(prepared["maps"], prepared["noise"], [name])[name]
    assert len(same) == len(other) == 4 and np.isfinite(same).all() and np.isfinite(other).all()
    assert min(same) > max(other)


# --------------------------------------------------------------------------- randomization modes


class TwoBlocks(SanityModel):
    """A tiny two-block classifier for the mode checks."""

    arch = "two_blocks_test"
    block_names = ("logits", "hidden")

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.relu, self.logits = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)
        self.gradcam_layer = None

    def init_block(self, name, generator=None):
        nn.init.normal_(self.block(name).weight, generator=generator)

    def forward(self, x):
        return self.logits(self.relu(self.hidden(x.flatten(1))))


@pytest.mark.parametrize("name", MODES.names())
def test_every_mode_starts_from_the_model_as_given_and_names_its_stages(name):
    model = TwoBlocks().eval()
    other = TwoBlocks().eval()
    before = _parameters(model)
    x = torch.rand(5, 1, 2, 2)
    spec = MODES[name]
    inputs = ModeInputs(seed=0, random_label_model=other if "random_label_model" in spec.needs else None)
    stages = list(spec.stages(model, inputs))
    assert [s.name for s in stages] == spec.stage_names(model, inputs) and [s.index for s in stages] == list(range(len(stages)))
    assert stages[0].name == "original" and stages[0].targets is None and stages[0].transform is None
    with torch.no_grad():
        torch.testing.assert_close(stages[0].model(x), model(x))
        # a later stage changes something: the model's outputs, the classes explained or the inputs
        assert any(s.targets is not None or s.transform is not None or not torch.equal(s.model(x), model(x))
                   for s in stages[1:])
    assert all(torch.equal(a, b) for a, b in zip(before, _parameters(model)))  # the caller's model is untouched
    assert len(stages) >= 2 and spec.description


def test_a_method_parameter_is_checked_against_its_declared_type():
    from saliency_sanity.methods.registry import METHODS
    smoothgrad, ig = METHODS["smoothgrad"], METHODS["integrated_gradients"]
    smoothgrad.bind({"n_samples": 3, "noise_level": 1})  # an int where a float is declared is fine
    for params, key in [({"n_samples": "abc"}, "n_samples"), ({"n_samples": True}, "n_samples"),
                        ({"noise_level": "high"}, "noise_level")]:
        with pytest.raises(ValueError, match=f"config key methods.smoothgrad.{key} must be"):
            smoothgrad.bind(params)
    with pytest.raises(ValueError, match="methods.integrated_gradients.steps must be int, got 2.5"):
        ig.bind({"steps": 2.5})
