"""The paper's normalizations of saliency maps and the metrics that compare two maps.

Normalizations (``normalization`` argument), applied to one map of shape (C, H, W):

- ``"max"`` (MNIST style): absolute map ``a = sum_c |m_c|`` divided by its maximum, so it lies
  in [0, 1] with max exactly 1; signed map ``s = sum_c m_c`` divided by ``max |s|``, in [-1, 1].
  No clipping.
- ``"percentile"`` (ImageNet style): absolute map ``a / P99(a)`` clipped to [0, 1]; signed map
  ``clip(s / P99(|s|), -1, 1)``: the span is the 99th percentile of the signed map's
  magnitude, so the top 1 % of magnitudes saturate at +-1 and the sign is kept. (Visualizations
  that map the span onto [0, 1] as ``(s + span) / (2 span)`` are an increasing affine map of
  ours: the Spearman correlations are the same.)

Degenerate scales: a map whose scale (max, or 99th percentile) is 0 is all zeros (or, for the
percentile, more than 99 % zeros). An all-zero map stays all zeros. When only the percentile is
0, the scale falls back to the maximum, so the few non-zero pixels keep their ranks instead of
all saturating.

SSIM and HOG inputs (``structure_input``): ``"original"`` (the default) prepares them as the
paper's code did: the raw signed map with all its channels, min-max scaled to [0, 1] as one
float32 array; SSIM is then scikit-image's multichannel SSIM with Gaussian weights and data range
2 (the old ``compare_ssim`` default for floats), HOG its multichannel HOG (at each pixel the
channel with the strongest gradient). ``"absolute"`` compares the normalized absolute map
(channel sum of |m|) instead, with data range 1, as this project did before. On one example
(Adebayo et al.'s panels are the original's) the choice moved SSIM from 0.34 to 0.48 and HOG from
0.56 to 0.81. A constant map, which the original would divide by zero, scales to zeros.

Metrics form a registry (:data:`METRICS`, :func:`register_metric`): each is a function of two
prepared batches of maps (:class:`PreparedMaps`, the reference and the other) returning one score
per image; the runner scores every registered metric. The built-in ones: ``spearman_abs`` and ``spearman_signed`` (Spearman rank
correlation of the flattened normalized maps, average ranks for ties, as
``scipy.stats.spearmanr``), ``ssim`` (scikit-image's SSIM of the [0, 1] absolute maps, Gaussian
weights, data_range 1) and ``hog`` (Spearman correlation of the scikit-image HOG feature vectors
of the absolute maps). SSIM and HOG are scikit-image's numbers, computed a batch at a time
(:mod:`saliency_sanity.batched_skimage`).

Constant inputs: Spearman's correlation is undefined when a ranking is constant (zero
variance). We define it as 1.0 when both are constant (identical, all-tied rankings) and 0.0
when exactly one is (no rank information shared), so an all-zero map from a dead model scores
as uncorrelated instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable

import numpy as np

from saliency_sanity import batched_skimage
from saliency_sanity.contracts import NORMALIZATIONS
from saliency_sanity.registry import Registry

if TYPE_CHECKING:  # figures import this module; torch would cost each figure job seconds
    import torch

    MapsLike = np.ndarray | torch.Tensor

PERCENTILE = 99.0
HOG_ORIENTATIONS = 9
HOG_CELLS_PER_BLOCK = 3  # scikit-image's default; reduced when the map has fewer cells
SSIM_DEFAULT_WINDOW = {True: 11, False: 7}  # scikit-image's windows (Gaussian sigma 1.5: 11 taps)
STRUCTURE_INPUTS = ("original", "absolute")  # what SSIM and HOG compare (module docstring)
ORIGINAL_SSIM_DATA_RANGE = 2.0  # skimage 0.15's compare_ssim on float images: the dtype range [-1, 1]



def _as_batch(maps: MapsLike) -> np.ndarray:
    """(N, C, H, W) float64 from a tensor or array of maps; a single (C, H, W) map becomes N = 1."""
    if hasattr(maps, "detach"):  # a torch tensor
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 3:
        maps = maps[None]
    if maps.ndim != 4:
        raise ValueError(f"expected maps of shape (N, C, H, W) or (C, H, W), got {maps.shape}")
    return maps


def _single(map_: MapsLike) -> MapsLike:
    """One image's map (C, H, W); a batch here would silently compare only its first image."""
    if map_.ndim != 3:
        raise ValueError(f"expected one map of shape (C, H, W), got {tuple(map_.shape)}; use prepare/compare for batches")
    return map_


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")


def _scale(values: np.ndarray, normalization: str) -> np.ndarray:
    """Per-map scale (N, 1, 1) of non-negative maps (N, H, W): max or 99th percentile (see module doc)."""
    peak = values.max(axis=(1, 2))
    if normalization == "max":
        scale = peak
    else:
        scale = np.percentile(values, PERCENTILE, axis=(1, 2))
        scale = np.where(scale > 0, scale, peak)
    return np.where(scale > 0, scale, 1.0)[:, None, None]  # all-zero maps stay zero


def normalize_absolute(maps: MapsLike, normalization: str = "max") -> np.ndarray:
    """Absolute maps (N, H, W) in [0, 1]: channel sum of |m| over its max or its clipped P99."""
    _check_normalization(normalization)
    absolute = np.abs(_as_batch(maps)).sum(axis=1)
    return np.clip(absolute / _scale(absolute, normalization), 0.0, 1.0)


def normalize_signed(maps: MapsLike, normalization: str = "max") -> np.ndarray:
    """Signed maps (N, H, W) in [-1, 1]: channel sum over its max magnitude or its clipped P99 span."""
    _check_normalization(normalization)
    signed = _as_batch(maps).sum(axis=1)
    return np.clip(signed / _scale(np.abs(signed), normalization), -1.0, 1.0)


def minmax_scaled(maps: MapsLike) -> np.ndarray:
    """The original's SSIM and HOG input: each raw map (C, H, W) as float32, min-max scaled to [0, 1]
    over all its channels (a constant map becomes zeros)."""
    batch = _as_batch(maps).astype(np.float32)
    low = batch.min(axis=(1, 2, 3), keepdims=True)
    span = batch.max(axis=(1, 2, 3), keepdims=True) - low
    return np.where(span > 0, (batch - low) / np.where(span > 0, span, 1), 0).astype(np.float32)


def hog_features(absolute: np.ndarray, pixels_per_cell: int) -> np.ndarray:
    """HOG feature vectors (N, F) of maps (N, H, W), or of multichannel maps (N, C, H, W):
    scikit-image's ``hog`` (L2-Hys), batched."""
    height, width = absolute.shape[-2:]
    if not 1 <= pixels_per_cell <= min(height, width):
        raise ValueError(
            f"hog_pixels_per_cell={pixels_per_cell} does not fit {height}x{width} maps "
            f"(config key similarity.hog_pixels_per_cell): use 1..{min(height, width)}"
        )
    block = min(HOG_CELLS_PER_BLOCK, min(height, width) // pixels_per_cell)
    return batched_skimage.hog(np.asarray(absolute, dtype=np.float64), orientations=HOG_ORIENTATIONS,
                               pixels_per_cell=pixels_per_cell, cells_per_block=block)


@dataclass(frozen=True)
class Ranks:
    """Centred, unit-norm average ranks per row, so a Spearman correlation is a dot product.

    ``constant`` marks rows whose values are all equal (zero norm: correlation undefined).
    """

    unit: np.ndarray  # (N, D)
    constant: np.ndarray  # (N,) bool

    @classmethod
    def of(cls, values: np.ndarray) -> Ranks:
        from scipy.stats import rankdata  # here, not at the top: scipy.stats costs 1 s, and planning the DAG imports this module

        ranks = rankdata(values.reshape(len(values), -1), axis=1)
        centred = ranks - ranks.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(centred, axis=1)
        constant = norm == 0
        return cls(centred / np.where(constant, 1.0, norm)[:, None], constant)


def rank_correlation(a: Ranks, b: Ranks) -> np.ndarray:
    """Spearman correlation per row, with the constant-map rule of the module docstring."""
    rho = np.clip(np.einsum("nd,nd->n", a.unit, b.unit), -1.0, 1.0)
    rho = np.where(a.constant | b.constant, 0.0, rho)
    return np.where(a.constant & b.constant, 1.0, rho)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair of two (N, ...) arrays (flattened per row)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"expected two (N, ...) arrays of one shape, got {a.shape} and {b.shape}")
    return rank_correlation(Ranks.of(a), Ranks.of(b))


@dataclass(frozen=True)
class SimilaritySettings:
    """How maps are normalized and compared (the config's ``similarity`` section)."""

    normalization: str = "max"
    hog_pixels_per_cell: int = 7
    ssim_gaussian: bool = True
    structure_input: str = "original"  # SSIM and HOG: the original's min-max scaled map, or the absolute map


class PreparedMaps:
    """A batch of maps normalized once, with what the metrics need computed on first use and kept.

    The reference (stage 0) maps are prepared once and compared with every stage.
    """

    def __init__(self, absolute: np.ndarray, signed: np.ndarray, settings: SimilaritySettings,
                 structure: np.ndarray | None = None) -> None:
        self.absolute = absolute  # (N, H, W) normalized absolute maps in [0, 1]
        self.signed = signed  # (N, H, W) normalized signed maps in [-1, 1]
        self.settings = settings
        # what SSIM and HOG compare: (N, C, H, W) min-max scaled maps (original), else the absolute maps
        self.structure = absolute[:, None] if structure is None else structure

    def __len__(self) -> int:
        return len(self.absolute)

    @cached_property
    def abs_ranks(self) -> Ranks:
        return Ranks.of(self.absolute)

    @cached_property
    def signed_ranks(self) -> Ranks:
        return Ranks.of(self.signed)

    @cached_property
    def hog_ranks(self) -> Ranks:
        return Ranks.of(hog_features(self.structure, self.settings.hog_pixels_per_cell))


def spearman_to(maps: np.ndarray, reference: np.ndarray, normalization: str = "max") -> dict[str, np.ndarray]:
    """Per-example Spearman correlations (absolute and signed maps) of maps with reference maps.

    Both are (N, C, ...) arrays; 1-D signals (N, C, L) are treated as (N, C, 1, L) images. The
    normalizations are the randomization tests'.
    """
    a, b = (np.asarray(m, dtype=np.float64) for m in (maps, reference))
    if a.ndim == 3:
        a, b = a[:, :, None], b[:, :, None]
    return {
        "spearman_abs": spearman(
            normalize_absolute(a, normalization), normalize_absolute(b, normalization)
        ),
        "spearman_signed": spearman(
            normalize_signed(a, normalization), normalize_signed(b, normalization)
        ),
    }


def prepare(maps: MapsLike, *, normalization: str = "max", hog_pixels_per_cell: int = 7,
            ssim_gaussian: bool = True, structure_input: str = "original") -> PreparedMaps:
    """Normalize a batch of raw maps (N, C, H, W); the metrics' features follow on first use.

    The normalized (N, H, W) maps are kept too: the runner's maps archive stores them as compared
    by the rank correlations (SSIM and HOG compare ``structure_input``'s maps, module docstring).
    """
    if structure_input not in STRUCTURE_INPUTS:
        raise ValueError(f"unknown SSIM / HOG input {structure_input!r} (config key similarity.structure_input); "
                         f"choose one of {STRUCTURE_INPUTS}")
    settings = SimilaritySettings(normalization, hog_pixels_per_cell, ssim_gaussian, structure_input)
    structure = minmax_scaled(maps) if structure_input == "original" else None
    return PreparedMaps(normalize_absolute(maps, normalization), normalize_signed(maps, normalization), settings,
                        structure)


MetricFn = Callable[[PreparedMaps, PreparedMaps], np.ndarray]
METRICS: Registry[MetricFn] = Registry("similarity metric")


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(reference, other) -> scores (N,)`` as similarity metric ``name``."""

    def decorator(fn: MetricFn) -> MetricFn:
        METRICS.add(name, fn)
        return fn

    return decorator


def _ssim_window(height: int, width: int, gaussian: bool) -> int | None:
    """scikit-image's window where it fits; otherwise the largest odd size that does."""
    side = min(height, width)
    if side >= SSIM_DEFAULT_WINDOW[gaussian]:
        return None
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3 pixels, got {height}x{width}")
    return side if side % 2 else side - 1


def ssim_batch(a: np.ndarray, b: np.ndarray, *, gaussian: bool = True, data_range: float = 1.0) -> np.ndarray:
    """SSIM per image of two batches (N, H, W) of maps, or (N, C, H, W) (the mean over channels, as
    scikit-image's multichannel SSIM): scikit-image's numbers, computed for the batch at once."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (3, 4):
        raise ValueError(f"expected two (N, H, W) or (N, C, H, W) batches of one shape, got {a.shape} and {b.shape}")
    n, height, width = len(a), *a.shape[-2:]
    window = _ssim_window(height, width, gaussian) or SSIM_DEFAULT_WINDOW[gaussian]
    scores = batched_skimage.ssim(a.reshape(-1, height, width), b.reshape(-1, height, width), window=window,
                                  gaussian=gaussian, data_range=data_range)
    return scores.reshape(n, -1).mean(axis=1)


def compare(reference: PreparedMaps, other: PreparedMaps, metrics: list[str] | None = None) -> dict[str, list[float]]:
    """Every registered metric (or those named) per image between two prepared batches of the same images."""
    if reference.absolute.shape != other.absolute.shape:
        raise ValueError(f"cannot compare maps of shapes {reference.absolute.shape} and {other.absolute.shape}")
    scores = {}
    for name in metrics or METRICS.names():
        values = np.asarray(METRICS.get_entry(name)(reference, other), dtype=np.float64)
        if values.shape != (len(reference),):
            raise RuntimeError(f"similarity metric {name!r} returned shape {values.shape} for {len(reference)} maps")
        scores[name] = values.tolist()
    return scores


@register_metric("spearman_abs")
def spearman_abs_metric(reference: PreparedMaps, other: PreparedMaps) -> np.ndarray:
    """Spearman rank correlation of the normalized absolute maps."""
    return rank_correlation(reference.abs_ranks, other.abs_ranks)


@register_metric("spearman_signed")
def spearman_signed_metric(reference: PreparedMaps, other: PreparedMaps) -> np.ndarray:
    """Spearman rank correlation of the normalized signed maps."""
    return rank_correlation(reference.signed_ranks, other.signed_ranks)


@register_metric("ssim")
def ssim_metric(reference: PreparedMaps, other: PreparedMaps) -> np.ndarray:
    """SSIM of the min-max scaled raw maps (data range 2, the original's), or of the [0, 1] absolute maps."""
    original = reference.settings.structure_input == "original"
    return ssim_batch(reference.structure, other.structure, gaussian=reference.settings.ssim_gaussian,
                      data_range=ORIGINAL_SSIM_DATA_RANGE if original else 1.0)


@register_metric("hog")
def hog_metric(reference: PreparedMaps, other: PreparedMaps) -> np.ndarray:
    """Spearman rank correlation of the HOG feature vectors of the min-max scaled raw maps, or of the absolute maps."""
    return rank_correlation(reference.hog_ranks, other.hog_ranks)


def similarity(
    map_a: MapsLike,
    map_b: MapsLike,
    *,
    normalization: str = "max",
    hog_pixels_per_cell: int = 7,
    ssim_gaussian: bool = True,
    structure_input: str = "original",
) -> dict[str, float]:
    """Every registered metric between two raw maps (C, H, W) of one image."""
    map_a, map_b = _single(map_a), _single(map_b)
    settings = {"normalization": normalization, "hog_pixels_per_cell": hog_pixels_per_cell,
                "ssim_gaussian": ssim_gaussian, "structure_input": structure_input}
    scores = compare(prepare(map_a, **settings), prepare(map_b, **settings))
    return {metric: values[0] for metric, values in scores.items()}


def spearman_abs(map_a: MapsLike, map_b: MapsLike, normalization: str = "max") -> float:
    """Spearman correlation of the normalized absolute maps of one image."""
    map_a, map_b = _single(map_a), _single(map_b)
    return float(spearman(normalize_absolute(map_a, normalization), normalize_absolute(map_b, normalization))[0])


def spearman_signed(map_a: MapsLike, map_b: MapsLike, normalization: str = "max") -> float:
    """Spearman correlation of the normalized signed maps of one image."""
    map_a, map_b = _single(map_a), _single(map_b)
    return float(spearman(normalize_signed(map_a, normalization), normalize_signed(map_b, normalization))[0])


def ssim(map_a: MapsLike, map_b: MapsLike, normalization: str = "max", gaussian: bool = True,
         structure_input: str = "original") -> float:
    """SSIM of one image's maps, prepared as ``structure_input`` says (module docstring)."""
    a, b = (prepare(_single(m), normalization=normalization, ssim_gaussian=gaussian, structure_input=structure_input)
            for m in (map_a, map_b))
    return float(ssim_metric(a, b)[0])


def hog(map_a: MapsLike, map_b: MapsLike, normalization: str = "max", pixels_per_cell: int = 7,
        structure_input: str = "original") -> float:
    """Spearman correlation of the HOG feature vectors of one image's maps, prepared as ``structure_input`` says."""
    a, b = (prepare(_single(m), normalization=normalization, hog_pixels_per_cell=pixels_per_cell,
                    structure_input=structure_input) for m in (map_a, map_b))
    return float(hog_metric(a, b)[0])
