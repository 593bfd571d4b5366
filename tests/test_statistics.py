"""The statistics of every summary and verdict (saliency_sanity.statistics): bootstrap CIs over images and over
images x seeds, and Krippendorff's alpha, against hand-computed values and seeded simulations."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_sanity.statistics import krippendorff_alpha, mean_ci


def test_mean_ci_brackets_the_mean_and_drops_nan():
    mean, low, high = mean_ci(np.array([1.0, 1.0, np.nan]))
    assert (mean, low, high) == (1.0, 1.0, 1.0)
    values = np.random.default_rng(1).normal(0.5, 0.1, 400)
    mean, low, high = mean_ci(values)
    assert low < mean < high and high - low == pytest.approx(2 * 1.96 * 0.1 / 20, rel=0.25)
    assert np.isnan(mean_ci(np.array([np.nan]))[0])


def test_mean_ci_covers_the_true_mean_at_about_its_stated_rate():
    # 2,000 seeded samples of 100 draws from N(0.3, 1): the 95 % percentile-bootstrap CI of the mean should contain
    # 0.3 in about 95 % of them. The percentile interval runs slightly narrow (the plug-in variance; about 93.5-94 %
    # here), so 92.5-97 % is accepted: a CI that ignored the spread (or a 90 % one) would fall well outside.
    rng = np.random.default_rng(0)
    covered = [low <= 0.3 <= high for low, high in
               (mean_ci(rng.normal(0.3, 1.0, 100), seed=k)[1:] for k in range(2000))]
    assert 0.925 <= np.mean(covered) <= 0.97


def test_the_two_way_ci_covers_image_and_seed_spread_at_about_its_stated_rate():
    # scores = mu + image effect + seed effect + noise, 40 images x 10 seeds: the seed effect is shared by every
    # image of a seed, so a CI that resampled the 400 cells as if independent would cover far less often (about
    # 60 % here); the two-way bootstrap covers mu at about the stated rate.
    rng = np.random.default_rng(0)
    covered, naive = [], []
    for k in range(400):
        values = (0.3 + rng.normal(0, 0.5, (40, 1)) + rng.normal(0, 0.3, (1, 10)) + rng.normal(0, 0.2, (40, 10)))
        _, low, high = mean_ci(values, seed=k, n_boot=400)
        covered.append(low <= 0.3 <= high)
        _, low, high = mean_ci(values.reshape(-1), seed=k, n_boot=400)
        naive.append(low <= 0.3 <= high)
    assert 0.88 <= np.mean(covered) <= 0.98
    assert np.mean(naive) < 0.8


def test_the_two_way_mean_is_the_mean_of_the_finite_cells_and_one_seed_is_the_one_way_ci():
    values = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    assert mean_ci(values)[0] == pytest.approx(17 / 5)
    column = np.array([[0.1], [0.4], [0.2]])
    assert mean_ci(column) == mean_ci(column[:, 0])


def test_krippendorffs_alpha_against_hand_computed_values():
    assert krippendorff_alpha(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)
    # units (1, 2) and (2, 1): D_o = (2 + 2) / 4 = 1; D_e = 8 / (4 x 3) = 2/3; alpha = 1 - 1 / (2/3) = -0.5
    assert krippendorff_alpha(np.array([[1.0, 2.0], [2.0, 1.0]])) == pytest.approx(-0.5)
    # units (1, 1, 2) and (3, 3, 3): within-unit ordered pairs sum to 4, / (3 - 1) = 2, D_o = 2 / 6 = 1/3; over all
    # six values the unordered pairs sum to 2 x 1 (1-2) + 6 x 4 (1-3) + 3 x 1 (2-3) = 29, D_e = 58 / (6 x 5);
    # alpha = 1 - (1/3) / (58/30) = 24/29
    assert krippendorff_alpha(np.array([[1.0, 1.0, 2.0], [3.0, 3.0, 3.0]])) == pytest.approx(24 / 29)


def test_krippendorffs_alpha_leaves_out_units_with_one_rating_and_is_nan_without_spread():
    values = np.array([[1.0, 2.0], [2.0, 1.0], [5.0, np.nan]])
    assert krippendorff_alpha(values) == pytest.approx(-0.5)
    assert np.isnan(krippendorff_alpha(np.ones((4, 3))))
