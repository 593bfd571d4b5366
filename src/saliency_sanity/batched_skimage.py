"""scikit-image's SSIM and HOG for a whole batch of maps at once, with scikit-image's numbers.

scikit-image computes both one image at a time, and a randomization test compares thousands of
small maps: at 28 px, its per-image calls cost more than the arithmetic. These functions do the
same arithmetic in the same order over a batch (N, H, W), so their results are bit-identical to
``skimage.metrics.structural_similarity`` and ``skimage.feature.hog``; the tests check that on
random maps of several sizes, so an upstream change shows up as a failing test, not a silent drift.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter

SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5  # scikit-image's Gaussian weights (Wang et al. 2004): 11 taps
SSIM_K1, SSIM_K2 = 0.01, 0.03
HOG_EPS = 1e-5  # scikit-image's block-normalization epsilon
HOG_CLIP = 0.2  # L2-Hys: clip, then renormalize


def ssim(a: np.ndarray, b: np.ndarray, *, window: int, gaussian: bool, data_range: float = 1.0) -> np.ndarray:
    """``structural_similarity(x, y, data_range=data_range, gaussian_weights=gaussian, win_size=window)``
    per image pair (N, H, W).

    Every filter runs once over the batch (scipy.ndimage skips the batch axis: sigma or size 0
    there), with scikit-image's sample covariance; each image's mean is taken over its own
    cropped view, as scikit-image takes it. ``window`` is the crop and covariance window (with
    Gaussian weights scikit-image's filter is sigma 1.5 whatever the window, and so is this one).
    """
    if gaussian:
        def smooth(values: np.ndarray) -> np.ndarray:
            return gaussian_filter(values, (0, SSIM_SIGMA, SSIM_SIGMA), mode="reflect", truncate=SSIM_TRUNCATE)
    else:
        def smooth(values: np.ndarray) -> np.ndarray:
            return uniform_filter(values, (1, window, window))
    cov_norm = window**2 / (window**2 - 1)
    ux, uy = smooth(a), smooth(b)
    vx = cov_norm * (smooth(a * a) - ux * ux)
    vy = cov_norm * (smooth(b * b) - uy * uy)
    vxy = cov_norm * (smooth(a * b) - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    scores = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (window - 1) // 2
    return np.array([image[pad:-pad, pad:-pad].mean(dtype=np.float64) for image in scores])


def hog(images: np.ndarray, *, orientations: int, pixels_per_cell: int, cells_per_block: int) -> np.ndarray:
    """``hog(image, orientations, (p, p), (c, c), block_norm="L2-Hys", feature_vector=True)`` per image: (N, F).

    ``images``: (N, H, W), or (N, C, H, W) for ``hog(..., channel_axis=-1)`` of each (H, W, C) image.
    As scikit-image: central-difference gradients (zero on the border rows and columns), of the
    channel with the largest gradient magnitude at each pixel (the first on ties), orientations in
    [0, 180) degrees; each cell sums the magnitudes of its pixels in each
    orientation bin, row by row, in a float32 accumulator (scikit-image's Cython loop), and divides
    by its area; then each block is L2-Hys normalized.
    """
    channels = images if images.ndim == 4 else images[:, None]
    n, _, height, width = channels.shape
    p, block = pixels_per_cell, cells_per_block
    g_row = np.zeros_like(channels)
    g_row[..., 1:-1, :] = channels[..., 2:, :] - channels[..., :-2, :]
    g_col = np.zeros_like(channels)
    g_col[..., :, 1:-1] = channels[..., :, 2:] - channels[..., :, :-2]
    if channels.shape[1] > 1:  # the strongest channel at each pixel, as scikit-image picks it
        strongest = np.hypot(g_row, g_col).argmax(axis=1)[:, None]
        g_row = np.take_along_axis(g_row, strongest, axis=1)
        g_col = np.take_along_axis(g_col, strongest, axis=1)
    g_row, g_col = g_row[:, 0], g_col[:, 0]
    magnitude = np.hypot(g_col, g_row)
    orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    per_bin = 180.0 / orientations
    upper = per_bin * (np.arange(orientations) + 1)
    lower = per_bin * np.arange(orientations)
    cells_row, cells_col = height // p, width // p
    # A cell's pixels, offsets -(p/2) .. (p+1)/2 - 1 (C integer division) around its centre p/2 + k p,
    # are the rows and columns k p .. k p + p - 1: view the votes as (N, cells, p, cells, p, bins).
    inside = (orientation[..., None] >= lower) & (orientation[..., None] < upper)
    votes = np.where(inside, magnitude[..., None], 0.0)[:, :cells_row * p, :cells_col * p]
    votes = votes.reshape(n, cells_row, p, cells_col, p, orientations)
    totals = np.zeros((n, cells_row, cells_col, orientations), dtype=np.float32)
    for i in range(p):  # the Cython loop's order: row by row, then column by column, a float32 running sum
        for j in range(p):
            totals = (totals.astype(np.float64) + votes[:, :, i, :, j]).astype(np.float32)
    histogram = (totals / np.float32(p * p)).astype(np.float64)  # float32 / int in C: a float32 quotient
    blocks_row, blocks_col = cells_row - block + 1, cells_col - block + 1
    blocks = np.stack([
        np.stack([histogram[:, r:r + block, c:c + block, :] for c in range(blocks_col)], axis=1)
        for r in range(blocks_row)
    ], axis=1)  # (N, blocks_row, blocks_col, block, block, orientations), contiguous
    flat = blocks.reshape(n, blocks_row, blocks_col, -1)
    out = flat / np.sqrt(np.square(flat).sum(axis=-1, keepdims=True) + HOG_EPS**2)
    out = np.minimum(out, HOG_CLIP)
    out = out / np.sqrt(np.square(out).sum(axis=-1, keepdims=True) + HOG_EPS**2)
    return out.reshape(n, -1)
