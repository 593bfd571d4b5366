"""Cascading and independent randomization: stage order, which blocks change, determinism."""

from __future__ import annotations

import torch
from torch import nn

from saliency_sanity.models import MnistCNN, SanityModel
from saliency_sanity.randomization import cascading, independent

BLOCKS = ("logits", "hidden", "embed")


class Tiny(SanityModel):
    """Three linear blocks; small enough to compare every weight."""

    arch = "tiny"
    block_names = BLOCKS

    def __init__(self):
        super().__init__()
        self.embed, self.relu1 = nn.Linear(4, 5), nn.ReLU()
        self.hidden, self.relu2 = nn.Linear(5, 5), nn.ReLU()
        self.logits = nn.Linear(5, 3)

    def init_block(self, name: str, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for p in self.block(name).parameters():
                p.normal_(generator=generator)

    def forward(self, x):
        return self.logits(self.relu2(self.hidden(self.relu1(self.embed(x)))))


def _trained() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def _same_block(a: nn.Module, b: nn.Module, name: str) -> bool:
    sa, sb = a.block(name).state_dict(), b.block(name).state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_stages_go_from_the_original_down_from_the_logits():
    model = _trained()
    for randomize in (cascading, independent):
        assert [(i, name) for i, name, _ in randomize(model, 0)] == [(0, "original"), *enumerate(BLOCKS, 1)]


def test_cascading_is_cumulative_and_independent_touches_one_block():
    model = _trained()
    for (k, _, cascaded), (_, _, single) in zip(cascading(model, 0), independent(model, 0)):
        for depth, name in enumerate(BLOCKS, 1):
            assert _same_block(cascaded, model, name) == (depth > k), (k, name)
            assert _same_block(single, model, name) == (depth != k), (k, name)


def test_a_block_gets_the_same_random_draw_in_both_modes():
    model = _trained()
    for (k, name, cascaded), (_, _, single) in list(zip(cascading(model, 3), independent(model, 3)))[1:]:
        assert _same_block(cascaded, single, name)


def test_the_callers_model_is_untouched_and_stage_models_are_copies():
    model = _trained()
    before = _state(model)
    stages = [m for _, _, m in cascading(model, 0)] + [m for _, _, m in independent(model, 0)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(stage is not model for stage in stages)
    assert len({id(stage) for stage in stages}) == len(stages)
    assert all(torch.equal(before[k], v) for k, v in stages[0].state_dict().items())
    with torch.no_grad():  # a stage model is the caller's to modify: the next stage is unaffected
        first = iter(cascading(model, 0))
        next(first)[2].logits.weight.zero_()
        assert torch.equal(next(first)[2].hidden.weight, model.hidden.weight)


def test_same_seed_same_weights_other_seed_other_weights():
    model = _trained()
    for randomize in (cascading, independent):
        runs = [[_state(m) for _, _, m in randomize(model, seed)] for seed in (5, 5, 6)]
        last = len(BLOCKS)
        assert all(torch.equal(runs[0][last][k], runs[1][last][k]) for k in runs[0][last])
        assert not torch.equal(runs[0][last]["embed.weight"], runs[2][last]["embed.weight"])


def test_paper_cnn_copies_keep_eval_mode_and_their_own_gradcam_layer():
    model = MnistCNN().eval()
    with torch.no_grad():  # stands in for training: move every parameter off its initial value
        for p in model.parameters():
            p.add_(1.0)
    stages = list(cascading(model, 0))
    assert [name for _, name, _ in stages] == ["original", "logits", "fc", "conv2", "conv1"]
    for _, _, stage in stages:
        assert not stage.training
        assert stage.gradcam_layer is stage.relu2 and stage.gradcam_layer is not model.relu2
    # the paper's initializer (bias 0.1) on randomized blocks only
    assert torch.allclose(stages[0][2].conv1.bias, torch.tensor(1.1))
    assert torch.all(stages[-1][2].conv1.bias == 0.1) and torch.all(stages[1][2].logits.bias == 0.1)
    assert torch.equal(stages[1][2].fc.bias, model.fc.bias)
