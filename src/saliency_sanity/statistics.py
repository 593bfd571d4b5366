"""The statistics every summary uses: the mean with a percentile-bootstrap confidence interval (over
images, or over images and seeds), and Krippendorff's alpha for how far seeds agree on a score.

Both are deterministic for a seed, so a figure or a verdict does not change between reruns on the
same data.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000
CI_LEVEL = 0.95


def mean_ci(values: np.ndarray, *, n_boot: int = N_BOOT, level: float = CI_LEVEL, seed: int = 0):
    """(mean, low, high): percentile bootstrap CI of the mean; NaNs (undefined scores) dropped.

    ``values`` of shape (images,) resample the images. Of shape (images, seeds) they resample images and
    seeds independently (a two-way bootstrap: each resample draws n images and m seeds with replacement and
    takes the mean of the n x m cells it picked), so the interval covers both sources of spread. With few
    seeds the seed term is itself estimated from few draws and the interval runs narrow: in a seeded simulation
    of 20 images (image sd 0.5, cell noise sd 0.2), a 95 % interval covered the mean 92 % of the time with 10
    seeds, 91 % with 3 seeds of sd 0.1 and 84 % with 3 seeds of sd 0.3. Read it together with the seeds'
    agreement (:func:`krippendorff_alpha`).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 2 and values.shape[1] > 1:
        return _two_way_mean_ci(values, n_boot, level, seed)
    values = values.reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    means = values[np.random.default_rng(seed).integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    return (values.mean(), *_percentiles(means, level))


def _two_way_mean_ci(values: np.ndarray, n_boot: int, level: float, seed: int):
    finite = np.isfinite(values)
    if not finite.any():
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    n, m = values.shape
    rows = rng.integers(0, n, (n_boot, n, 1))
    cols = rng.integers(0, m, (n_boot, 1, m))
    picked, counted = np.where(finite, values, 0.0)[rows, cols], finite[rows, cols]
    totals = counted.sum(axis=(1, 2))
    means = picked.sum(axis=(1, 2))[totals > 0] / totals[totals > 0]
    return (values[finite].mean(), *_percentiles(means, level))


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return low, high


def krippendorff_alpha(values: np.ndarray) -> float:
    """Krippendorff's alpha (interval metric) of ``values`` (units, raters), e.g. images x seeds: 1 when every
    seed gives each image the same score, 0 when the seeds agree no better than chance, below 0 when worse.
    Tomsett et al. (2020) read a saliency metric's reliability this way. Units with fewer than two finite
    ratings are left out; NaN when fewer than two such units remain or every value is the same.

    alpha = 1 - D_o / D_e, with D_o the mean squared difference between ratings of the same unit (each unit
    weighted by its ratings minus one) and D_e that between any two ratings.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"krippendorff_alpha takes (units, raters) values, got shape {values.shape}")
    finite = np.isfinite(values)
    units = finite.sum(axis=1) >= 2
    values, finite = values[units], finite[units]
    if len(values) < 2:
        return np.nan
    counts = finite.sum(axis=1)
    pairable = values[finite]
    total = pairable.size
    # sum over ordered pairs i != j of (v_i - v_j)^2 = 2 k^2 var(v) (population variance) for k values
    within = np.array([2 * k**2 * row[mask].var() / (k - 1) for row, mask, k in zip(values, finite, counts)]).sum()
    expected = 2 * total**2 * pairable.var() / (total * (total - 1))
    if expected == 0:
        return np.nan
    return float(1 - (within / total) / expected)
