"""The paper's normalizations and similarity metrics, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from saliency_sanity import similarity as sim

RNG = np.random.default_rng(0)


def _map(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


# --------------------------------------------------------------------------- normalizations


def test_max_normalization_sums_absolute_channels_and_divides_by_the_max():
    maps = np.array([[[[1.0, -2.0]], [[-3.0, 0.5]]]])  # (1, 2 channels, 1, 2)
    # channel sums of |.|: [4, 2.5]; max 4
    np.testing.assert_allclose(sim.normalize_absolute(maps, "max"), [[[1.0, 0.625]]])
    # signed channel sums: [-2, -1.5]; max magnitude 2
    np.testing.assert_allclose(sim.normalize_signed(maps, "max"), [[[-1.0, -0.75]]])


def test_percentile_normalization_clips_at_the_99th_percentile():
    values = np.arange(1.0, 101.0).reshape(1, 1, 10, 10)  # P99 (linear) = 99 + 0.01 = 99.01
    out = sim.normalize_absolute(values, "percentile")
    np.testing.assert_allclose(out.ravel(), np.minimum(np.arange(1.0, 101.0) / 99.01, 1.0))
    assert (out == 1.0).sum() == 1 and out.min() > 0


def test_signed_percentile_uses_the_span_of_magnitudes_and_keeps_the_sign():
    values = np.arange(-50.0, 50.0).reshape(1, 1, 10, 10)  # |.| has P99 = 49 + 0.01 = 49.01
    out = sim.normalize_signed(values, "percentile").ravel()
    np.testing.assert_allclose(out, np.clip(np.arange(-50.0, 50.0) / 49.01, -1, 1))
    assert out.min() == -1.0 and out.max() < 1.0
    np.testing.assert_array_equal(np.sign(out), np.sign(np.arange(-50.0, 50.0)))


def test_normalized_maps_are_in_range_for_both_styles():
    maps = _map(4, 3, 12, 12) * 100
    for normalization in sim.NORMALIZATIONS:
        absolute, signed = sim.normalize_absolute(maps, normalization), sim.normalize_signed(maps, normalization)
        assert absolute.shape == signed.shape == (4, 12, 12)
        assert absolute.min() >= 0 and absolute.max() == 1.0
        assert signed.min() >= -1 and signed.max() <= 1
    assert np.all(sim.normalize_absolute(maps, "max").max(axis=(1, 2)) == 1.0)


def test_degenerate_scales_keep_zero_maps_zero_and_fall_back_to_the_max():
    sparse = np.zeros((1, 1, 20, 20))  # two non-zero pixels of 400: P99 is 0, the max 2
    sparse[0, 0, 3, 4], sparse[0, 0, 5, 6] = -2.0, 0.5
    out = sim.normalize_absolute(sparse, "percentile")
    assert out[0, 3, 4] == 1.0 and out[0, 5, 6] == 0.25 and out.sum() == 1.25
    zero = np.zeros((1, 1, 5, 5))
    for normalization in sim.NORMALIZATIONS:
        assert not sim.normalize_absolute(zero, normalization).any()
        assert not sim.normalize_signed(zero, normalization).any()


def test_tensors_and_single_maps_are_accepted():
    maps = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(sim.normalize_absolute(maps)[0], sim.normalize_absolute(maps.numpy()[None])[0])


def test_unknown_normalization_is_an_error():
    with pytest.raises(ValueError, match="normalization 'minmax'"):
        sim.normalize_absolute(_map(1, 1, 4, 4), "minmax")


# --------------------------------------------------------------------------- Spearman


def test_spearman_of_a_3x3_example_matches_the_hand_computed_value():
    a = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    b = np.array([1.0, 3, 2, 4, 6, 5, 9, 8, 7]).reshape(1, 1, 3, 3)
    # rank differences 0,-1,1,0,-1,1,-2,0,2: sum d^2 = 12; rho = 1 - 6*12 / (9*(81-1)) = 0.9
    assert sim.spearman_signed(a[0], b[0]) == pytest.approx(0.9)
    assert sim.spearman_abs(a[0], b[0]) == pytest.approx(0.9)  # positive maps: |.| keeps the ranks


def test_spearman_with_ties_matches_scipy():
    a = RNG.integers(0, 4, size=(5, 50)).astype(float)
    b = RNG.integers(0, 4, size=(5, 50)).astype(float)
    expected = [spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(sim.spearman(a, b), expected, atol=1e-12)


def test_a_map_and_its_negation():
    m = _map(2, 9, 9)
    assert sim.spearman_signed(m, -m) == pytest.approx(-1.0)
    assert sim.spearman_abs(m, -m) == pytest.approx(1.0)
    assert sim.ssim(m, -m, structure_input="absolute") == pytest.approx(1.0)
    assert sim.hog(m, -m, pixels_per_cell=3, structure_input="absolute") == pytest.approx(1.0)
    # the original's input is the signed map min-max scaled: blind to scale and offset, not to the sign
    assert sim.ssim(m, 3 * m + 1) == pytest.approx(1.0) and sim.ssim(m, -m) < 0.9
    assert sim.hog(m, 3 * m + 1, pixels_per_cell=3) == pytest.approx(1.0)


def test_the_original_structure_input_is_scikit_images_multichannel_ssim_and_hog_of_the_minmax_map():
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    a, b = _map(3, 3, 32, 30), _map(3, 3, 32, 30)
    prepared = [sim.prepare(m, hog_pixels_per_cell=8) for m in (a, b)]
    for raw, p in zip((a, b), prepared):  # by hand, as the original: float32, (m - min) / (max - min) over all channels
        raw = raw.astype(np.float32)
        low, high = raw.min(axis=(1, 2, 3), keepdims=True), raw.max(axis=(1, 2, 3), keepdims=True)
        np.testing.assert_array_equal(p.structure, (raw - low) / (high - low))
    x, y = (np.moveaxis(p.structure, 1, -1).astype(np.float64) for p in prepared)  # (N, H, W, C)
    ssim_expected = [structural_similarity(u, v, gaussian_weights=True, channel_axis=-1, data_range=2.0)
                     for u, v in zip(x, y)]
    np.testing.assert_allclose(sim.compare(*prepared, ["ssim"])["ssim"], ssim_expected, rtol=1e-12)
    features = [[hog(u, pixels_per_cell=(8, 8), cells_per_block=(3, 3), channel_axis=-1) for u in z] for z in (x, y)]
    hog_expected = sim.spearman(np.array(features[0]), np.array(features[1]))
    np.testing.assert_allclose(sim.compare(*prepared, ["hog"])["hog"], hog_expected, rtol=1e-12)
    with pytest.raises(ValueError, match="similarity.structure_input"):
        sim.prepare(a, structure_input="signed")


def test_constant_maps_follow_the_documented_rule():
    constant, other = np.full((1, 8, 8), 0.3), _map(1, 8, 8)
    assert sim.spearman_abs(constant, np.zeros((1, 8, 8))) == 1.0
    assert sim.spearman_signed(constant, constant * 2) == 1.0
    assert sim.spearman_abs(constant, other) == 0.0
    assert sim.spearman_signed(other, constant) == 0.0
    assert sim.hog(constant, other, pixels_per_cell=4) == 0.0  # a flat map has no gradients
    assert sim.hog(constant, other, pixels_per_cell=4, structure_input="absolute") == 0.0
    assert not np.isnan(sim.spearman(np.ones((2, 4)), np.zeros((2, 4)))).any()


# --------------------------------------------------------------------------- SSIM, HOG, batches


def test_identical_maps_score_one_on_every_metric():
    m = _map(1, 28, 28)
    assert sim.similarity(m, m.copy()) == pytest.approx(dict.fromkeys(sim.METRICS, 1.0))


def test_ssim_works_on_28_pixel_and_small_maps_and_detects_change():
    for size in (28, 8, 5):
        a, b = _map(1, size, size), _map(1, size, size)
        assert sim.ssim(a, a) == pytest.approx(1.0)
        assert sim.ssim(a, b) < 0.9
    with pytest.raises(ValueError, match="at least 3x3"):
        sim.ssim(_map(1, 2, 9), _map(1, 2, 9))


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("shape", [(6, 28, 28), (3, 8, 10), (2, 5, 5), (2, 40, 33)])
def test_batched_ssim_is_bit_identical_to_scikit_image(shape, gaussian):
    from skimage.metrics import structural_similarity

    a = RNG.uniform(size=shape)
    b = np.clip(a + RNG.normal(scale=0.3, size=shape), 0, 1)
    side = min(shape[1:])  # scikit-image's window where it fits, else the largest odd one that does
    window = None if side >= (11 if gaussian else 7) else side - (1 - side % 2)
    expected = [structural_similarity(x, y, data_range=1.0, gaussian_weights=gaussian, win_size=window)
                for x, y in zip(a, b)]
    np.testing.assert_array_equal(sim.ssim_batch(a, b, gaussian=gaussian), expected)


@pytest.mark.parametrize("shape, cell", [((6, 28, 28), 7), ((3, 28, 28), 4), ((2, 64, 48), 16), ((3, 30, 29), 8),
                                         ((2, 9, 9), 3)])
def test_batched_hog_is_bit_identical_to_scikit_image(shape, cell):
    from skimage.feature import hog

    maps = RNG.uniform(size=shape)
    maps[0] = 0  # a dead map
    maps[1, :5] = 1.0  # flat rows: gradients of exactly 0, orientations on a bin edge
    block = min(sim.HOG_CELLS_PER_BLOCK, min(shape[1:]) // cell)
    expected = [hog(m, orientations=sim.HOG_ORIENTATIONS, pixels_per_cell=(cell, cell),
                    cells_per_block=(block, block), feature_vector=True) for m in maps]
    np.testing.assert_array_equal(sim.hog_features(maps, cell), expected)


def test_hog_features_use_the_configured_cells():
    features = sim.hog_features(sim.normalize_absolute(_map(2, 1, 28, 28)), pixels_per_cell=7)
    # 4 x 4 cells of 7 px, 3 x 3-cell blocks at 2 x 2 positions, 9 orientations
    assert features.shape == (2, 2 * 2 * 3 * 3 * 9)
    with pytest.raises(ValueError, match="hog_pixels_per_cell=30"):
        sim.hog_features(np.zeros((1, 28, 28)), pixels_per_cell=30)


def test_batch_comparison_equals_the_per_image_metrics():
    a, b = _map(3, 2, 14, 14), _map(3, 2, 14, 14)
    settings = {"normalization": "percentile", "hog_pixels_per_cell": 7}
    scores = sim.compare(sim.prepare(a, **settings), sim.prepare(b, **settings))
    assert list(scores) == list(sim.METRICS)
    for i in range(3):
        single = sim.similarity(a[i], b[i], **settings)
        assert {k: v[i] for k, v in scores.items()} == pytest.approx(single)
        assert single["spearman_abs"] == pytest.approx(sim.spearman_abs(a[i], b[i], "percentile"))
        assert single["ssim"] == pytest.approx(sim.ssim(a[i], b[i], "percentile"))
        assert single["hog"] == pytest.approx(sim.hog(a[i], b[i], "percentile", pixels_per_cell=7))
    assert all(isinstance(v, float) for values in scores.values() for v in values)


def test_single_image_metrics_reject_batches():
    with pytest.raises(ValueError, match=r"one map of shape \(C, H, W\)"):
        sim.spearman_abs(_map(2, 1, 4, 4), _map(2, 1, 4, 4))
