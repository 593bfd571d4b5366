"""One look for every figure: method order, colours, labels, and how a map is displayed.

Colours and order are keyed by method *name*, not by position in a file, so a method keeps its
colour and place in every figure and every model even when some methods are missing.
"""

from __future__ import annotations

import textwrap
import zlib

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

# The paper's order of methods; names not listed follow, alphabetically, in their group.
CANONICAL_ORDER = (
    "gradient",
    "smoothgrad",
    "smoothgrad_squared",
    "vargrad",
    "gradient_x_input",
    "integrated_gradients",
    "ig_smoothgrad",
    "expected_gradients",
    "guided_backprop",
    "deconvnet",
    "gradcam",
    "guided_gradcam",
    "gradcam_plus_plus",
    "cam",
    "deeplift_rescale",
    "deeplift_revealcancel",
    "occlusion",
    "meaningful_perturbation",
)
CONTROL_ORDER = ("sobel", "canny", "random_noise")

LABELS = {
    "gradient": "Gradient",
    "smoothgrad": "SmoothGrad",
    "smoothgrad_squared": "SmoothGrad-SQ",
    "vargrad": "VarGrad",
    "gradient_x_input": "Gradient × Input",
    "integrated_gradients": "Integrated Gradients",
    "ig_smoothgrad": "IG-SmoothGrad",
    "expected_gradients": "Expected Gradients",
    "guided_backprop": "Guided Backprop",
    "deconvnet": "DeconvNet",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "deeplift_rescale": "DeepLIFT (Rescale)",
    "deeplift_revealcancel": "DeepLIFT (RevealCancel)",
    "gradcam_plus_plus": "Grad-CAM++",
    "cam": "CAM",
    "occlusion": "Occlusion",
    "meaningful_perturbation": "Meaningful Perturbation",
    "sobel": "Sobel edges",
    "canny": "Canny edges",
    "random_noise": "Random noise",
}

METRIC_LABELS = {
    "spearman_abs": "Spearman rank corr. (absolute)",
    "spearman_signed": "Spearman rank corr. (signed)",
    "ssim": "SSIM",
    "hog": "HOG similarity",
}
METRIC_ORDER = tuple(METRIC_LABELS)

# tab10 then the light half of tab20: 20 distinguishable colours for model-based methods.
_METHOD_COLOURS = [to_hex(c) for c in colormaps["tab10"].colors] + [
    to_hex(c) for c in colormaps["tab20"].colors[1::2]
]
_CONTROL_COLOURS = ["#000000", "#5a5a5a", "#a0a0a0", "#2f2f2f", "#7a7a7a"]

# Matplotlib settings shared by all figures (applied with rc_context, never globally).
RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 200,
}
CONTROL_DASHES = (4, 2)


def is_control(method: str) -> bool:
    """Whether the registry flags ``method`` as model-free; unregistered names count as model-based.

    The built-in names are answered from the orders above (a test checks them against the registry), so
    that a figure job imports the registry, and with it torch, only for a method added later.
    """
    if method in CANONICAL_ORDER or method in CONTROL_ORDER:
        return method in CONTROL_ORDER
    from saliency_sanity.methods import METHODS  # importing the package registers the built-ins

    entry = METHODS.get(method)
    return bool(entry is not None and entry.model_free)


def _rank(name: str, canonical: tuple[str, ...]) -> tuple[int, str]:
    return (canonical.index(name), "") if name in canonical else (len(canonical), name)


def order_methods(methods) -> list[str]:
    """Model-based methods in the paper's order, then the model-free controls."""
    unique = list(dict.fromkeys(methods))
    model_based = sorted((m for m in unique if not is_control(m)), key=lambda m: _rank(m, CANONICAL_ORDER))
    controls = sorted((m for m in unique if is_control(m)), key=lambda m: _rank(m, CONTROL_ORDER))
    return model_based + controls


def method_colour(method: str) -> str:
    """A fixed colour per method name (controls in greys), the same in every figure."""
    if method in CANONICAL_ORDER:
        return _METHOD_COLOURS[CANONICAL_ORDER.index(method)]
    if method in CONTROL_ORDER:
        return _CONTROL_COLOURS[CONTROL_ORDER.index(method)]
    spare = _CONTROL_COLOURS[len(CONTROL_ORDER):] if is_control(method) else _METHOD_COLOURS[len(CANONICAL_ORDER):]
    return spare[zlib.crc32(method.encode()) % len(spare)]


# A marker per family of methods, so that 15 or more curves in one panel can be told apart by shape as well as
# colour: gradients and their noise averages, input-times-gradient and path integrals, modified backward
# passes, class activation maps, DeepLIFT, perturbations. Other methods (and the controls, dashed) get circles.
FAMILY_MARKERS = {
    "o": ("gradient", "smoothgrad", "smoothgrad_squared", "vargrad"),
    "s": ("gradient_x_input", "integrated_gradients", "ig_smoothgrad", "expected_gradients"),
    "^": ("guided_backprop", "deconvnet"),
    "D": ("gradcam", "guided_gradcam", "gradcam_plus_plus", "cam"),
    "v": ("deeplift_rescale", "deeplift_revealcancel"),
    "P": ("occlusion", "meaningful_perturbation"),
}
_MARKER_OF = {method: marker for marker, methods in FAMILY_MARKERS.items() for method in methods}


def method_line(method: str) -> dict:
    """Colour, marker and dashes of a method's curve (``ax.plot(..., **method_line(m))``), the same in every figure."""
    return {"color": method_colour(method), "marker": _MARKER_OF.get(method, "o"),
            "dashes": CONTROL_DASHES if is_control(method) else (None, None)}


def categorical_colours(n: int) -> list[str]:
    """n distinguishable colours (tab10, then tab20's light half), for lines that are not methods (baselines)."""
    return [_METHOD_COLOURS[i % len(_METHOD_COLOURS)] for i in range(n)]


def wrap(label: str, width: int | None = None) -> str:
    """``label`` on lines of about ``width`` characters, broken between words only ("SmoothGrad-SQ" and
    "(RevealCancel)" stay whole, wider than ``width`` if need be); unchanged without a width."""
    return textwrap.fill(label, width, break_on_hyphens=False, break_long_words=False) if width else label


def method_label(method: str, width: int | None = None) -> str:
    """Human-readable method name, optionally wrapped to ``width`` characters per line."""
    return wrap(LABELS.get(method, method.replace("_", " ")), width)


def metric_label(metric: str, width: int | None = None) -> str:
    return wrap(METRIC_LABELS.get(metric, metric.replace("_", " ")), width)


def order_metrics(metrics) -> list[str]:
    unique = list(dict.fromkeys(metrics))
    return sorted(unique, key=lambda m: _rank(m, METRIC_ORDER))


def percent(value: float) -> str:
    """A fraction as a percentage in captions: two significant digits below 10 %, whole percents above."""
    if np.isnan(value):
        return "n/a"
    if not np.isfinite(value):
        return "inf"
    return f"{100 * value:.2g} %" if 100 * value < 10 else f"{100 * value:.0f} %"


def display_map(panel: np.ndarray, signed: bool = False) -> np.ndarray | None:
    """A stored (H, W) map as the panel to show, its values as given.

    The maps archive holds maps already normalized per panel by the runner (summed over channels;
    absolute in [0, 1], shown with vmin 0 / vmax 1; signed in [-1, 1], shown with vmin -1 / vmax 1),
    so nothing is rescaled here; ``signed`` only says which range the values are in. None where
    the map is missing (empty or non-finite), e.g. a method that does not apply to the model.
    """
    panel = np.asarray(panel, dtype=np.float32)  # float16 in the archive; imshow wants float32
    if panel.size == 0 or not np.all(np.isfinite(panel)):
        return None
    if panel.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {panel.shape}")
    return panel


def display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A (C, H, W) image in [0, 1] as an imshow array and colormap (grey for one channel)."""
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.clip(np.transpose(image[:3], (1, 2, 0)), 0.0, 1.0), None
