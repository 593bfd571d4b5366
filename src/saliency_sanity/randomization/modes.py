"""The registry of randomization modes: each entry yields the stages a test compares with stage 0.

A mode is one decorated function ``fn(model, inputs) -> Iterator[Stage]``. A :class:`Stage` is a
model to explain, and may carry its own targets (a function of the stage's logits and the labels,
e.g. a random other class) or an input transform (e.g. noisy copies), so that later modes (random logit, noisy
inputs) fit the same runner. Stage 0 is the model as given (``original``). A mode declares what
it needs beyond the model (``needs``: today only ``random_label_model``, the model trained on
permuted labels) and how to name its stages before running them (``stage_names``).

The built-in modes: ``cascading`` and ``independent`` model-parameter randomization (blocks from
the logits down, :mod:`saliency_sanity.randomization.blocks`), ``full`` (every block at once: the
cascade's last stage alone, for a verdict that reads only that), ``labels`` (the model trained on
permuted labels) and ``random_logit`` (the same model explaining a random other class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from saliency_sanity.contracts import ORIGINAL_STAGE
from saliency_sanity.models.base import SanityModel
from saliency_sanity.runtime import derive_seed
from saliency_sanity.randomization import blocks
from saliency_sanity.randomization.laws import LawSpec
from saliency_sanity.registry import Registry

RANDOM_LABEL_MODEL = "random_label_model"
ORDERS = ("top_down", "bottom_up")
RANDOM_LABELS_STAGE = "random_labels"
RANDOM_LOGIT_STAGE = "random_logit"
FULLY_RANDOMIZED_STAGE = "fully_randomized"


@dataclass(frozen=True)
class Stage:
    """One state of a randomization test."""

    index: int
    name: str
    model: SanityModel
    # the classes to explain at this stage, from the stage's logits on the inputs and the labels; None: the run's choice
    targets: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None  # applied to the inputs at this stage


@dataclass(frozen=True)
class ModeInputs:
    """What a mode may use besides the model."""

    seed: int = 0
    random_label_model: SanityModel | None = None
    law: LawSpec | None = None  # how blocks are re-initialized; None: the model's own initializer
    granularity: str = "blocks"  # blocks | modules: what each stage re-initializes (SanityModel.randomization_units)
    order: str = "top_down"  # top_down (from the logits, the paper's) | bottom_up (from the input)

    def units(self, model: SanityModel) -> tuple[str, ...]:
        """The blocks or modules the stages re-initialize, in the order they do."""
        if self.order not in ORDERS:
            raise ValueError(f"randomization order {self.order!r}; choose one of {list(ORDERS)}")
        units = model.randomization_units(self.granularity)
        return units if self.order == "top_down" else units[::-1]


StagesFn = Callable[[SanityModel, ModeInputs], Iterator[Stage]]
StageNamesFn = Callable[[SanityModel, ModeInputs], list[str]]


@dataclass(frozen=True)
class ModeSpec:
    name: str
    stages: StagesFn
    stage_names: StageNamesFn
    needs: tuple[str, ...] = ()
    description: str = ""


MODES: Registry[ModeSpec] = Registry("randomization mode")


def register_mode(
    name: str, *, stage_names: StageNamesFn, needs: tuple[str, ...] = ()
) -> Callable[[StagesFn], StagesFn]:
    """Register ``fn(model, inputs)`` as randomization mode ``name``; ``stage_names(model, inputs)`` names its
    stages before they run."""

    def decorator(fn: StagesFn) -> StagesFn:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        MODES.add(name, ModeSpec(name, fn, stage_names, tuple(needs), doc))
        return fn

    return decorator


def mode_spec(name: str, config_key: str = "randomization.modes") -> ModeSpec:
    return MODES.get_entry(name, config_key)


def block_stage_names(model: SanityModel, inputs: ModeInputs) -> list[str]:
    return [ORIGINAL_STAGE, *inputs.units(model)]


@register_mode("cascading", stage_names=block_stage_names)
def cascading(model: SanityModel, inputs: ModeInputs) -> Iterator[Stage]:
    """Blocks re-initialized cumulatively from the logits down to the input."""
    for index, name, stage_model in blocks.cascading(model, inputs.seed, inputs.law, inputs.units(model)):
        yield Stage(index, name, stage_model)


@register_mode("independent", stage_names=block_stage_names)
def independent(model: SanityModel, inputs: ModeInputs) -> Iterator[Stage]:
    """Each block re-initialized alone in the trained model."""
    for index, name, stage_model in blocks.independent(model, inputs.seed, inputs.law, inputs.units(model)):
        yield Stage(index, name, stage_model)


@register_mode("full", stage_names=lambda model, inputs: [ORIGINAL_STAGE, FULLY_RANDOMIZED_STAGE])
def full(model: SanityModel, inputs: ModeInputs) -> Iterator[Stage]:
    """Every block re-initialized at once: the cascading test's last stage without the stages between (the
    same weights, drawn block by block from the same seeds)."""
    yield Stage(0, ORIGINAL_STAGE, model)
    yield Stage(1, FULLY_RANDOMIZED_STAGE, blocks.fully_randomized(model, inputs.seed, inputs.law, inputs.units(model)))


@register_mode("labels", stage_names=lambda model, inputs: [ORIGINAL_STAGE, RANDOM_LABELS_STAGE], needs=(RANDOM_LABEL_MODEL,))
def labels(model: SanityModel, inputs: ModeInputs) -> Iterator[Stage]:
    """The same architecture trained on permuted labels (the data-randomization test)."""
    if inputs.random_label_model is None:
        raise ValueError("mode 'labels' compares with a model trained on random labels: pass random_label_model_path")
    yield Stage(0, ORIGINAL_STAGE, model)
    yield Stage(1, RANDOM_LABELS_STAGE, inputs.random_label_model)


def random_other_class(logits: torch.Tensor, seed: int) -> torch.Tensor:
    """For each row, a class drawn uniformly from those other than the row's argmax (seeded, the same on any
    device)."""
    shift = torch.randint(1, logits.shape[1], (len(logits),), generator=torch.Generator().manual_seed(seed))
    return (logits.argmax(dim=1) + shift.to(logits.device)) % logits.shape[1]


@register_mode("random_logit", stage_names=lambda model, inputs: [ORIGINAL_STAGE, RANDOM_LOGIT_STAGE])
def random_logit(model: SanityModel, inputs: ModeInputs) -> Iterator[Stage]:
    """The same model explaining a random other class than its prediction (RandomLogit, Sixt et al. 2020): a
    map that does not change explains the input, not the class."""
    seed = derive_seed(inputs.seed, "mode", RANDOM_LOGIT_STAGE)
    yield Stage(0, ORIGINAL_STAGE, model)
    yield Stage(1, RANDOM_LOGIT_STAGE, model, targets=lambda logits, labels: random_other_class(logits, seed))
