"""The model registry: architecture name -> builder, with what the experiments need to know of it.

An entry is a :class:`~saliency_sanity.models.base.SanityModel` class (or any callable returning
one) registered with :func:`register_model`. The model itself declares its randomization blocks
from the logits down (``block_names``, ``init_block``) and its Grad-CAM layer (``gradcam_layer``);
the entry adds the datasets it is made for, the shape of one input, how inputs are preprocessed,
and where its weights come from (``trained`` by the workflow's training step, or the sources of
a published checkpoint). Registry-wide tests check every entry against this contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from saliency_sanity.data.images import ImagePreprocessing
from saliency_sanity.models.base import SanityModel
from saliency_sanity.registry import Registry

Builder = Callable[[], SanityModel]


@dataclass(frozen=True)
class PublishedWeights:
    """How a model with published weights gets them (:mod:`saliency_sanity.models.published`).

    ``build(weights, data_dir, *, sha256, seed, mirror, reset_bn_statistics) -> (model, record)``
    builds the model for a config value of its ``weights`` (a named source, a file path, or
    ``random``). ``auto(data_dir, mirror)`` says which named source the value ``auto`` stands
    for, or None when no weights can be had (then the run goes on without the model).
    """

    build: Callable[..., tuple[SanityModel, dict]]
    auto: Callable[..., str | None] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture."""

    arch: str
    build: Builder
    datasets: tuple[str, ...]  # the datasets it classifies
    input_shape: tuple[int, ...]  # one input (C, H, W) or (C, L), for checks and examples
    preprocessing: str  # how raw data becomes its input (documented in figures and the README)
    weights: tuple[str, ...] = ("trained",)  # trained: by the workflow; else a published checkpoint's sources
    description: str = ""
    image_preprocessing: ImagePreprocessing | None = None  # natural-image models: how a photo becomes the input
    published: PublishedWeights | None = None  # models with published weights: how to get them


MODELS: Registry[ModelSpec] = Registry("architecture")


def register_model(
    arch: str,
    *,
    datasets: tuple[str, ...],
    input_shape: tuple[int, ...],
    preprocessing: str,
    weights: tuple[str, ...] = ("trained",),
    image_preprocessing: ImagePreprocessing | None = None,
    published: PublishedWeights | None = None,
) -> Callable[[Builder], Builder]:
    """Register ``build`` (a SanityModel class, or a function returning a fresh model) as ``arch``.

    A model of natural images gives its ``image_preprocessing`` recipe; photos are prepared with it.
    A model with published weights gives ``published``, how to build it with them.
    """

    def decorator(build: Builder) -> Builder:
        doc = (build.__doc__ or "").strip().split("\n")[0]
        MODELS.add(arch, ModelSpec(arch, build, tuple(datasets), tuple(input_shape), preprocessing,
                                   tuple(weights), doc, image_preprocessing, published))
        return build

    return decorator


def model_spec(arch: str) -> ModelSpec:
    """The entry of ``arch``, or an error listing the registered architectures."""
    return MODELS.get_entry(arch)


def build_model(arch: str, seed: int | None = None) -> SanityModel:
    """A freshly initialized model; with ``seed`` its initialization is reproducible."""
    model = model_spec(arch).build()
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
    return model
