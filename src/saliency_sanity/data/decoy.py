"""Derived datasets with a planted shortcut, to see which attribution methods reveal it.

- ``decoy-mnist`` (after Ross et al. 2017): a 3 x 3 patch in the top-left corner encodes the class
  as intensity 255 * y / 9 (y / 9 in [0, 1]). In the training images the patch is the image's own
  class; in the test images it encodes a class drawn at random, independent of the label (seeded).
  Random rather than absent: an absent patch reads as intensity 0, the code of class 0, so a model
  that relies on the patch would be pushed towards class 0 instead of simply losing its cue.
- ``class-noise-mnist``: ``N_SCATTERED`` background pixels at random places (per image, seeded)
  take the intensity (y + 1) / 10; as above the test images carry a random class's intensity.

Both keep every other pixel of MNIST as it is. :data:`SHORTCUTS` plants each dataset's code for any
classes and says where it is (the mask the shortcut evaluation measures attribution mass on).
"""

from __future__ import annotations

from typing import Callable

import torch

from saliency_sanity.data.registry import DataSource, Examples, register_dataset
from saliency_sanity.runtime import derive_seed

PATCH = (slice(0, 3), slice(0, 3))  # rows, columns of the decoy patch (top-left corner)
N_SCATTERED = 20  # pixels of the class-noise code per image
NUM_CLASSES = 10

# images (N, 1, H, W), the classes to encode (N,), the seed, the split -> (images with the code, where it is)
Planter = Callable[[torch.Tensor, torch.Tensor, int, str], tuple[torch.Tensor, torch.Tensor]]


def planted_classes(labels: torch.Tensor, split: str, seed: int, recipe: str) -> torch.Tensor:
    """The class each image's shortcut encodes: its label in training, a seeded random class in the test split."""
    if split == "train":
        return labels.clone()
    generator = torch.Generator().manual_seed(derive_seed(seed, recipe, split))
    return torch.randint(NUM_CLASSES, labels.shape, generator=generator)


def plant_patch(images: torch.Tensor, codes: torch.Tensor, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoy patch: the top-left 3 x 3 pixels set to code / 9."""
    images = images.clone()
    images[(..., *PATCH)] = (codes.to(images.dtype) / 9).view(-1, 1, 1, 1)
    mask = torch.zeros_like(images, dtype=torch.bool)
    mask[(..., *PATCH)] = True
    return images, mask


def plant_scattered(images: torch.Tensor, codes: torch.Tensor, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """N_SCATTERED background pixels per image (places seeded by split) set to (code + 1) / 10."""
    images = images.clone()
    generator = torch.Generator().manual_seed(derive_seed(seed, "class-noise-mnist/places", split))
    flat = images.view(len(images), -1)
    background = flat == 0
    # N_SCATTERED background pixels per image: the smallest of random keys, background only
    keys = torch.rand(flat.shape, generator=generator).masked_fill(~background, 2.0)
    places = keys.topk(N_SCATTERED, dim=1, largest=False).indices
    values = ((codes + 1).to(images.dtype) / 10).view(-1, 1).expand(-1, N_SCATTERED)
    flat.scatter_(1, places, values)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, places, True).view_as(images)
    return images, mask


SHORTCUTS: dict[str, Planter] = {"decoy-mnist": plant_patch, "class-noise-mnist": plant_scattered}


def _shortcut_dataset(name: str, split: str, source: DataSource) -> Examples:
    base = source.load("mnist", split)
    codes = planted_classes(base.labels, split, source.seed, name)
    images, _ = SHORTCUTS[name](base.images, codes, source.seed, split)
    return Examples(images, base.labels, valid_range=base.valid_range)


@register_dataset("decoy-mnist", num_classes=NUM_CLASSES, depends_on=("mnist",))
def decoy_mnist(split: str, source: DataSource) -> Examples:
    """MNIST with a 3 x 3 top-left patch of intensity y / 9: the label in training, a random class in test."""
    return _shortcut_dataset("decoy-mnist", split, source)


@register_dataset("class-noise-mnist", num_classes=NUM_CLASSES, depends_on=("mnist",))
def class_noise_mnist(split: str, source: DataSource) -> Examples:
    """MNIST with 20 scattered background pixels of intensity (y + 1) / 10 (a random class in test)."""
    return _shortcut_dataset("class-noise-mnist", split, source)
