"""Closed-form attributions of the linear and the conv-sum model, in NumPy.

Written from the formulas alone (no autograd, no hooks), so agreement with the registry's
methods checks both. Each function takes the model's weights and the inputs as arrays and
computes in their dtype (pass float64 for a tight check).

Linear model f_c(x) = w_c . x + b_c (target c):
    gradient = w_c (the same for every input); gradient x input = w_c * x;
    Integrated Gradients with a zero baseline = x * mean_k w_c = w_c * x.

Conv-sum model f(x) = s * sum_i sum_j ReLU(w_j . x_i) - offset over the windows x_i of
width k (x_i = x[:, i:i+k]):
    gradient(x)[:, t] = s * sum_{i <= t < i+k} sum_j 1[w_j . x_i > 0] w_j[:, t-i];
    guided backprop = gradient: the upstream gradient of every ReLU is s > 0, so its rule
    (pass positive gradients through active units) keeps exactly the active units;
    deconvnet = s * sum_{i <= t < i+k} sum_j w_j[:, t-i]: its rule ignores the activations, so
    the map depends on the filters only, never on the input;
    gradient x input = Integrated Gradients (zero baseline) = DeepLIFT-Rescale (zero reference)
    = x * gradient(x): f is positively homogeneous (ReLU(a z) = a ReLU(z), a > 0), so every
    point a x of the straight path has x's activation pattern, and the Rescale multiplier
    ReLU(z)/z of a zero reference is that pattern too.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _target_weights(weights: np.ndarray, target: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """w_c per example, reshaped to the input's shape (B, ...)."""
    weights = np.asarray(weights)
    target = np.asarray(target).reshape(-1)
    return weights[target].reshape((len(target),) + tuple(shape[1:]))


def linear_gradient(weights: np.ndarray, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """w_c for each example: (classes, D) weights, x of shape (B, ...) with prod(...) = D."""
    return _target_weights(weights, target, np.shape(x)).astype(np.asarray(x).dtype)


def linear_gradient_x_input(weights: np.ndarray, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """w_c * x; also Integrated Gradients with a zero baseline."""
    x = np.asarray(x)
    return linear_gradient(weights, x, target) * x


def window_pattern(filters: np.ndarray, x: np.ndarray) -> np.ndarray:
    """1[w_j . x_i > 0] as (B, windows, filters), for filters (J, C, k) and signals (B, C, L)."""
    windows = sliding_window_view(np.asarray(x), filters.shape[-1], axis=-1)  # (B, C, N, k)
    responses = np.einsum("bcnk,jck->bnj", windows, filters)
    return (responses > 0).astype(np.asarray(x).dtype)


def _overlap_add(per_window: np.ndarray, length: int) -> np.ndarray:
    """Sum (B, N, C, k) window contributions back onto the (B, C, L) positions they cover."""
    batch, n_windows, channels, width = per_window.shape
    out = np.zeros((batch, channels, length), dtype=per_window.dtype)
    for offset in range(width):
        out[:, :, offset : offset + n_windows] += np.moveaxis(per_window[..., offset], 1, 2)
    return out


def convsum_gradient(filters: np.ndarray, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """s * sum over covering windows of sum_j 1[w_j . x_i > 0] w_j (also guided backprop)."""
    filters, x = np.asarray(filters, dtype=np.asarray(x).dtype), np.asarray(x)
    per_window = np.einsum("bnj,jck->bnck", window_pattern(filters, x), filters)
    return scale * _overlap_add(per_window, x.shape[-1])


def convsum_deconvnet(filters: np.ndarray, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """s * sum over covering windows of sum_j w_j: the same map for every input."""
    filters, x = np.asarray(filters, dtype=np.asarray(x).dtype), np.asarray(x)
    n_windows = x.shape[-1] - filters.shape[-1] + 1
    per_window = np.broadcast_to(filters.sum(axis=0), (x.shape[0], n_windows) + filters.shape[1:])
    return scale * _overlap_add(np.ascontiguousarray(per_window), x.shape[-1])


def convsum_gradient_limit(x: np.ndarray, width: int) -> np.ndarray:
    """sum over covering windows of x_i / ||x_i|| (windows of norm 0 add nothing): the J -> inf shape."""
    x = np.asarray(x)
    windows = np.moveaxis(sliding_window_view(x, width, axis=-1), 2, 1)  # (B, N, C, k)
    norms = np.sqrt((windows**2).sum(axis=(2, 3), keepdims=True))
    unit = np.divide(windows, norms, out=np.zeros_like(windows), where=norms > 0)
    return _overlap_add(unit, x.shape[-1])


def convsum_gradient_x_input(filters: np.ndarray, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """x * gradient(x): also IG (zero baseline) and DeepLIFT-Rescale (zero reference)."""
    return np.asarray(x) * convsum_gradient(filters, x, scale)


# The stated tolerances of the agreement checks: relative error (see relative_error) per dtype.
# float32 leaves room for the Riemann sum of IG (steps roundings); a wrong activation pattern at a
# single window costs orders of magnitude more.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}

LinearForm = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
ConvSumForm = Callable[[np.ndarray, np.ndarray, float], np.ndarray]

# Registry method name -> closed form, for the methods each model's theory covers.
LINEAR_FORMS: dict[str, LinearForm] = {
    "gradient": linear_gradient,
    "smoothgrad": linear_gradient,  # the mean of a constant gradient is that gradient
    "guided_backprop": linear_gradient,  # no ReLU: nothing for its rule to change
    "gradient_x_input": linear_gradient_x_input,
    "integrated_gradients": linear_gradient_x_input,
    "deeplift_rescale": linear_gradient_x_input,
    "deeplift_revealcancel": linear_gradient_x_input,  # no nonlinearity: every rule is the Linear rule
}
CONVSUM_FORMS: dict[str, ConvSumForm] = {
    "gradient": convsum_gradient,
    "guided_backprop": convsum_gradient,
    "deconvnet": convsum_deconvnet,
    "gradient_x_input": convsum_gradient_x_input,
    "integrated_gradients": convsum_gradient_x_input,
    "deeplift_rescale": convsum_gradient_x_input,
}

# The many-random-filters limit of each method's map, up to a positive constant, as f(x, width).
CONVSUM_LIMITS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "gradient": convsum_gradient_limit,
    "guided_backprop": convsum_gradient_limit,
    "gradient_x_input": lambda x, width: np.asarray(x) * convsum_gradient_limit(x, width),
    "integrated_gradients": lambda x, width: np.asarray(x) * convsum_gradient_limit(x, width),
    "deeplift_rescale": lambda x, width: np.asarray(x) * convsum_gradient_limit(x, width),
}


def relative_error(computed: np.ndarray, expected: np.ndarray) -> float:
    """max |computed - expected| / max |expected| (0 when both are all zeros)."""
    computed, expected = np.asarray(computed, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    error = float(np.abs(computed - expected).max(initial=0.0))
    peak = float(np.abs(expected).max(initial=0.0))
    return error / peak if peak > 0 else error
