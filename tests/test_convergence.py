"""The IG convergence study against closed forms (saliency_sanity.evaluation.convergence)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from saliency_sanity.evaluation.convergence import convergence_table, map_error, path_outputs


class SumOfSquares(nn.Module):
    """f(x) = sum x^2: on a zero baseline IG's right rule with n points gives x^2 (n + 1) / n, an error
    of exactly 1/n; the trapezoid rule is exact; the path output is alpha^2 f(x)."""

    def forward(self, x):
        return (x**2).flatten(1).sum(1, keepdim=True)


@pytest.fixture
def inputs():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    return x, torch.zeros(3, dtype=torch.long), torch.zeros_like(x)


def test_completeness_error_per_rule_and_steps_matches_the_closed_form(inputs):
    x, target, baseline = inputs
    table = convergence_table(SumOfSquares(), x, target, baseline, rules=["right", "trapezoid"], step_counts=[2, 5, 50])
    assert len(table) == 2 * 3 * 3
    right = table[table.rule == "right"]
    torch.testing.assert_close(torch.tensor(right.error.to_numpy()), torch.tensor(1 / right.steps.to_numpy(), dtype=torch.float64))
    assert (table[table.rule == "trapezoid"].error < 1e-12).all()


def test_path_outputs_follow_the_straight_path(inputs):
    x, target, baseline = inputs
    table = path_outputs(SumOfSquares(), x, target, baseline, points=11)
    assert len(table) == 11 * 3
    f_x = (x**2).flatten(1).sum(1)
    for row in table.itertuples():
        assert row.logit == pytest.approx(row.alpha**2 * f_x[row.image].item(), rel=1e-9, abs=1e-12)


def test_map_error_is_the_relative_distance_from_the_reference():
    reference = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])
    maps = torch.tensor([[[3.0, 4.0]], [[0.0, 1.0]]])
    assert map_error(maps, reference) == pytest.approx([0.0, 2**0.5])
    assert all(value != value for value in map_error(maps, None))  # NaN without a reference
