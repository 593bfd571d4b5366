"""Model parameter randomization: cascading (top-down, cumulative) and independent (one block).

Both generators yield ``(stage_index, stage_name, model_at_stage)``: stage 0 is ``"original"``
(an untouched copy of the trained model), then one stage per block of ``model.block_names``
(logits first, down to the input). Every yielded model is its own copy on the caller's model's
device, so the caller may keep or modify it; the caller's model is never modified.

A block is re-initialized by a law (:mod:`saliency_sanity.randomization.laws`; default: the
model's own initializer, as the paper). Randomness: block ``name`` is always re-initialized with a
CPU generator seeded from ``(seed, name)`` alone (:func:`block_generator`), on a CPU copy of the
model, then moved to the model's device. Hence the same seed gives the same randomized weights on any device, and a
block gets the *same* random draw in cascading and independent mode (stage k of both differs
only in whether the blocks above it are randomized too).
"""

from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch

from saliency_sanity.contracts import ORIGINAL_STAGE as ORIGINAL
from saliency_sanity.models.base import SanityModel
from saliency_sanity.randomization.laws import MODEL_LAW, LawSpec
from saliency_sanity.runtime import derive_seed

BlockStage = tuple[int, str, SanityModel]


def block_generator(seed: int, block: str) -> torch.Generator:
    """The CPU generator that re-initializes ``block`` for ``seed`` (same in both modes)."""
    return torch.Generator().manual_seed(derive_seed(seed, "block", block))


def _device(model: SanityModel) -> torch.device:
    return next(model.parameters()).device


def _cpu_copy(model: SanityModel) -> SanityModel:
    return copy.deepcopy(model).cpu()


def cascading(model: SanityModel, seed: int, law: LawSpec | None = None,
              units: Sequence[str] | None = None) -> Iterator[BlockStage]:
    """Original, then blocks (or ``units``, in their order) re-initialized cumulatively from the logits down."""
    law = law or LawSpec.parse(MODEL_LAW)
    device = _device(model)
    yield 0, ORIGINAL, copy.deepcopy(model)
    randomized = _cpu_copy(model)
    for index, name in enumerate(model.block_names if units is None else units, start=1):
        law.apply(randomized, name, block_generator(seed, name))
        yield index, name, copy.deepcopy(randomized).to(device)


def independent(model: SanityModel, seed: int, law: LawSpec | None = None,
                units: Sequence[str] | None = None) -> Iterator[BlockStage]:
    """Original, then for each block (or each of ``units``) the trained model with only it re-initialized."""
    law = law or LawSpec.parse(MODEL_LAW)
    device = _device(model)
    yield 0, ORIGINAL, copy.deepcopy(model)
    trained = _cpu_copy(model)
    for index, name in enumerate(model.block_names if units is None else units, start=1):
        randomized = copy.deepcopy(trained)
        law.apply(randomized, name, block_generator(seed, name))
        yield index, name, randomized.to(device)


def fully_randomized(model: SanityModel, seed: int, law: LawSpec | None = None,
                     units: Sequence[str] | None = None) -> SanityModel:
    """A copy of ``model`` with every block (or each of ``units``) re-initialized: the cascading test's last
    stage, with the same weights, made without the copies of the stages between."""
    law = law or LawSpec.parse(MODEL_LAW)
    randomized = _cpu_copy(model)
    for name in model.block_names if units is None else units:
        law.apply(randomized, name, block_generator(seed, name))
    return randomized.to(_device(model))
