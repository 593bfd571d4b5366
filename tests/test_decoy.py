"""The shortcut datasets encode their class exactly as documented (saliency_sanity.data.decoy)."""

from __future__ import annotations

import pytest
import torch

from saliency_sanity.data import DATASETS, DataSource, Examples, load_examples, register_dataset
from saliency_sanity.data.decoy import N_SCATTERED, PATCH

LABELS = torch.arange(40) % 10


@pytest.fixture
def fake_mnist():
    """The derived datasets over a fake MNIST: digit-like strokes in the middle, black elsewhere."""
    images = torch.zeros(len(LABELS), 1, 28, 28)
    images[:, :, 8:20, 12:16] = torch.rand(len(LABELS), 1, 12, 4, generator=torch.Generator().manual_seed(0)) + 0.1

    def fake(split, source):
        return Examples(images.clone(), LABELS.clone())

    with DATASETS.isolated(keep=("decoy-mnist", "class-noise-mnist")):
        register_dataset("mnist", num_classes=10)(fake)  # dropped with the isolated registry
        yield images


def test_decoy_training_patch_is_the_class_and_the_test_patch_a_seeded_random_class(fake_mnist):
    train = load_examples("decoy-mnist", "train", DataSource(seed=0))
    patch = train.images[(..., *PATCH)]
    assert torch.equal(patch, (LABELS.float() / 9).view(-1, 1, 1, 1).expand_as(patch))
    outside = train.images.clone()
    outside[(..., *PATCH)] = 0
    assert torch.equal(outside, fake_mnist)  # nothing else changed
    test = load_examples("decoy-mnist", "test", DataSource(seed=0))
    codes = test.images[:, 0, 0, 0] * 9
    assert torch.allclose(codes, codes.round()) and set(codes.round().long().tolist()) <= set(range(10))
    assert (codes.round().long() != LABELS).float().mean() > 0.5  # independent of the label
    assert torch.equal(test.images, load_examples("decoy-mnist", "test", DataSource(seed=0)).images)
    assert not torch.equal(test.images, load_examples("decoy-mnist", "test", DataSource(seed=1)).images)


def test_class_noise_scatters_the_class_intensity_over_background_pixels_only(fake_mnist):
    train = load_examples("class-noise-mnist", "train", DataSource(seed=0))
    changed = train.images != fake_mnist
    assert (changed.flatten(1).sum(1) == N_SCATTERED).all()
    assert not (changed & (fake_mnist != 0)).any()  # the digit is untouched
    for image, label, mask in zip(train.images, LABELS, changed):
        assert torch.allclose(image[mask], torch.full((N_SCATTERED,), (label.item() + 1) / 10))
    test = load_examples("class-noise-mnist", "test", DataSource(seed=0))
    levels = {round(v * 10) for v in test.images[test.images != fake_mnist].tolist()}
    assert levels <= set(range(1, 11)) and len(levels) > 3
