"""Figures of the theory checks (results/theory/): the conv-sum model and the linear model.

Same builder signature as :mod:`saliency_sanity.figures.plots`:
``build(data, model, **options) -> (Figure, facts)``, where ``data`` maps an input key
(``theory_<name>_csv`` / ``theory_<name>_maps``) to a loaded table / dict of arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from saliency_sanity import similarity
from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import FigureInputError, require_arrays
from saliency_sanity.statistics import N_BOOT, mean_ci
from saliency_sanity.figures.plots import SIGNED_CMAP, map_grid, map_colorbar, show_image

REFERENCE_LABELS = {
    "input": "map vs. input",
    "limit": "map vs. many-random-filters limit",
    "edges": "map vs. edge detector (Sobel)",
    "random_filters": "trained vs. random filters' map",
}
FILTER_DASHES = {"random": (4, 2), "trained": (None, None)}
LINEAR_METHODS_SHORT = {"gradient": "Gradient", "gradient_x_input": "Grad × Input", "integrated_gradients": "IG"}


def load_theory_input(path: Path) -> pd.DataFrame | dict[str, np.ndarray]:
    """A theory CSV as a table, or a theory npz as a dict of arrays; empty or unreadable files are errors."""
    path = Path(path)
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        if table.empty:
            raise FigureInputError(f"{path}: no rows; rerun the theory step that writes it")
        return table
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as err:
        raise FigureInputError(f"{path}: not a readable npz without pickle ({err})") from err


def _signed(values: np.ndarray) -> np.ndarray:
    peak = np.abs(values).max()
    return values / peak if peak > 0 else values


def _spearman_signed(a: np.ndarray, b: np.ndarray) -> float:
    return float(similarity.spearman_to(a[None], b[None])["spearman_signed"][0])


# ---------------------------------------------------------------- conv-sum: maps


def convsum_maps(data: dict, model: str, *, n_signals: int = 2, n_filters_shown: int = 12) -> tuple[Figure, str]:
    """Paper Fig. 27 analogue: a signal, each method's map for random and trained filters, edges."""
    d = data["theory_convsum_maps"]
    require_arrays(d, ("signals", "labels", "edges", "filter_counts", "filters", "methods", "maps", "weights"), "convsum maps")
    counts, kinds = d["filter_counts"].tolist(), [str(f) for f in d["filters"]]
    methods = style.order_methods([str(m) for m in d["methods"]])
    order = [[str(m) for m in d["methods"]].index(m) for m in methods]
    signals = list(range(min(n_signals, len(d["signals"]))))
    n_cols = len(signals) * len(kinds)
    fig = Figure(figsize=(1.6 + 2.3 * n_cols, 2.0 + 1.05 * (2 + len(methods))), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.3, 1.05 * (2 + len(methods))])
    _filter_panels(top, d["weights"], kinds, counts[-1], n_filters_shown)
    axes = bottom.subplots(2 + len(methods), n_cols, sharex=True, squeeze=False)
    maps = d["maps"][-1]  # the largest number of filters: (filters, methods, signals, C, L)
    for s_pos, s in enumerate(signals):
        x = d["signals"][s].sum(axis=0)
        for k_pos, kind in enumerate(kinds):
            c = s_pos * len(kinds) + k_pos
            label = "bump" if d["labels"][s] else "no bump"
            axes[0, c].set_title(f"signal {s} ({label})\n{kind} filters, J = {counts[-1]}", fontsize=8)
            axes[0, c].plot(x, color="black", linewidth=1)
            axes[1, c].plot(_signed(d["edges"][s].sum(axis=0)), color="0.35", linewidth=1)
            for r, m in enumerate(order, start=2):
                panel = maps[k_pos, m, s].sum(axis=0)
                axes[r, c].plot(_signed(x), color="0.8", linewidth=0.8)
                axes[r, c].plot(_signed(panel), color=style.method_colour(methods[r - 2]), linewidth=1.1)
                rho = _spearman_signed(maps[k_pos, m, s], d["signals"][s])
                axes[r, c].text(0.02, 0.95, f"ρ = {rho:.2f}", transform=axes[r, c].transAxes, fontsize=7, va="top")
    row_labels = ["input", style.method_label("sobel")] + [style.method_label(m) for m in methods]
    for r, text in enumerate(row_labels):
        axes[r, 0].set_ylabel(text, fontsize=8, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
        ax.axhline(0, color="0.85", linewidth=0.5, zorder=0)
    for ax in axes[-1]:
        ax.set_xlabel("position", fontsize=8)
    fig.suptitle(f"{model}: maps of the conv + ReLU + sum-pooling model, random vs. trained filters")
    facts = (f"Filters (top): the first {min(n_filters_shown, d['weights'].shape[1])} of the J = {counts[-1]} "
             f"filters of seed {int(d['seed'])}, random and after training on the bump task. Maps (bottom) are "
             f"divided by their largest magnitude; grey: the input, scaled the same way; ρ: Spearman correlation "
             f"of the signed map with the input. Edge detector: the registry's Sobel control (the signed "
             f"derivative of a 1-D signal). Guided backprop equals the gradient here (closed form).")
    return fig, facts


def _filter_panels(fig, weights: np.ndarray, kinds: list[str], n_filters: int, shown: int) -> None:
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    for ax, kind, w in zip(axes, kinds, weights):
        for filt in w[:shown]:
            ax.plot(filt.sum(axis=0), linewidth=0.8, alpha=0.8)
        ax.set_title(f"{kind} filters (J = {n_filters}, first {min(shown, len(w))})", fontsize=8)
        ax.set_xlabel("tap", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axhline(0, color="0.85", linewidth=0.5, zorder=0)


# ---------------------------------------------------------------- conv-sum: correlation vs filters


def _summary(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in table.groupby(keys, sort=True):
        mean, low, high = mean_ci(group["value"].to_numpy())
        rows.append(dict(zip(keys, key), mean=mean, low=low, high=high))
    return pd.DataFrame(rows)


def convsum_filters(data: dict, model: str) -> tuple[Figure, str]:
    """Correlation of each method's map with the input (and edges, limit) vs the number of filters."""
    table: pd.DataFrame = data["theory_convsum_filters_csv"]
    missing = [c for c in ("seed", "n_filters", "filters", "method", "reference", "metric", "value") if c not in table]
    if missing:
        raise FigureInputError(f"convsum filters CSV: missing column(s) {missing}")
    references = [r for r in REFERENCE_LABELS if r in set(table["reference"])]
    metrics = style.order_metrics(table["metric"])
    methods = style.order_methods(table["method"])
    summary = _summary(table, ["reference", "metric", "method", "filters", "n_filters"])
    fig = Figure(figsize=(2.7 * len(references) + 2.2, 2.5 * len(metrics) + 0.6), layout="constrained")
    axes = fig.subplots(len(metrics), len(references), sharex=True, sharey=True, squeeze=False)
    for r, metric in enumerate(metrics):
        for c, reference in enumerate(references):
            ax = axes[r, c]
            for method in methods:
                for kind, dashes in FILTER_DASHES.items():
                    rows = summary[(summary["reference"] == reference) & (summary["metric"] == metric)
                                   & (summary["method"] == method) & (summary["filters"] == kind)]
                    if rows.empty:
                        continue
                    rows = rows.sort_values("n_filters")
                    wide = method == "guided_backprop"  # drawn wide and pale: it coincides with the gradient
                    ax.plot(rows["n_filters"], rows["mean"], color=style.method_colour(method), dashes=dashes,
                            linewidth=3.2 if wide else 1.2, alpha=0.4 if wide else 1.0, marker=None if wide else "o",
                            markersize=2.5, zorder=1 if wide else 2)
                    ax.fill_between(rows["n_filters"], rows["low"], rows["high"], color=style.method_colour(method),
                                    alpha=0.12, linewidth=0)
            ax.set_xscale("log", base=2)
            ax.axhline(0, color="0.6", linewidth=0.6, zorder=0)
            ax.grid(axis="y", color="0.9", linewidth=0.6)
            if r == 0:
                ax.set_title(REFERENCE_LABELS[reference], fontsize=8)
            if c == 0:
                ax.set_ylabel(style.metric_label(metric, 20))
    fig.supxlabel("number of filters J", fontsize=9)
    handles = [Line2D([], [], color=style.method_colour(m), label=style.method_label(m)) for m in methods]
    handles += [Line2D([], [], color="0.3", dashes=d, label=f"{k} filters") for k, d in FILTER_DASHES.items()]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    fig.suptitle(f"{model}: how input-like each method's map is, vs. the number of filters")
    n_seeds, n_signals = table["seed"].nunique(), table.groupby("seed")["signal"].nunique().max()
    facts = (f"Mean over {n_seeds} seed(s) x {n_signals} held-out signals; bands: 95 % bootstrap confidence interval "
             f"of the mean ({N_BOOT} resamples). Solid: trained filters; dashed: the random filters they started "
             f"from. The limit is the closed-form gradient of infinitely many Gaussian filters (the locally "
             f"normalized input; times the input for gradient x input). Guided backprop coincides with the "
             f"gradient (wide pale line).")
    return fig, facts


# ---------------------------------------------------------------- linear model


def linear_model(data: dict, model: str) -> tuple[Figure, str]:
    """The linear-model panel: maps of trained and random weights, and their correlations."""
    d = data["theory_linear_maps"]
    table: pd.DataFrame = data["theory_linear_csv"]
    require_arrays(d, ("image_ids", "images", "labels", "weights", "methods", "targets", "maps"), "linear maps")
    weights, methods = [str(w) for w in d["weights"]], [str(m) for m in d["methods"]]
    n_images = len(d["images"])
    fig = Figure(figsize=(1.2 + 0.95 * (1 + 2 * len(methods) + 0.5) + 0.8, 0.8 + 0.95 * n_images + 2.6),
                 layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.8 + 0.95 * n_images, 2.6])
    axes = map_grid(top, n_images, [["input"], methods, methods])
    for r in range(n_images):
        show_image(axes[r, 0], d["images"][r])
        targets = ", ".join(f"{w[0]}: {d['targets'][k, r]}" for k, w in enumerate(weights))
        axes[r, 0].set_ylabel(f"image {d['image_ids'][r]}, label {d['labels'][r]}\nexplained ({targets})", fontsize=7)
        for k in range(len(weights)):
            for m, method in enumerate(methods):
                ax = axes[r, 1 + k * len(methods) + m]
                panel = d["maps"][k, m, r].sum(axis=0)
                ax.imshow(_signed(panel), cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"{LINEAR_METHODS_SHORT.get(method, method)}\n({weights[k]} w)", fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    map_colorbar(top, axes[:, 1:], signed=True)
    _linear_bars(bottom, table, methods)
    fig.suptitle(f"{model}: the linear model f(x) = w·x, trained vs. random weights")
    facts = _linear_facts(table, d)
    return fig, facts


def _bar_group(ax: Axes, table: pd.DataFrame, methods: list[str], bars: list[tuple[str, dict, str, str]]) -> None:
    width = 0.8 / len(bars)
    for b, (label, where, colour, hatch) in enumerate(bars):
        means, errs = [], []
        for method in methods:
            rows = table[(table["method"] == method)]
            for key, value in where.items():
                rows = rows[rows[key] == value]
            mean, low, high = mean_ci(rows["value"].to_numpy())
            means.append(mean)
            errs.append((mean - low, high - mean))
        x = np.arange(len(methods)) + (b - (len(bars) - 1) / 2) * width
        ax.bar(x, means, width, yerr=np.array(errs).T, color=colour, hatch=hatch, edgecolor="white", label=label,
               error_kw=dict(ecolor="0.2", elinewidth=0.8, capsize=2))
    ax.set_xticks(range(len(methods)), [LINEAR_METHODS_SHORT.get(m, m) for m in methods])
    ax.set_ylim(-0.2, 1.05)
    ax.axhline(0, color="0.6", linewidth=0.6)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left")


def _linear_bars(fig, table: pd.DataFrame, methods: list[str]) -> None:
    left, right = fig.subplots(1, 2, width_ratios=[2, 1])
    dark, light = "#4c72b0", "#a6bddb"
    grey, pale = "#7f7f7f", "#c7c7c7"
    _bar_group(left, table[table["analysis"] == "input"], methods, [
        ("trained w, |map|", dict(weights="trained", metric="spearman_abs"), dark, ""),
        ("trained w, signed", dict(weights="trained", metric="spearman_signed"), light, ""),
        ("random w, |map|", dict(weights="random", metric="spearman_abs"), grey, "//"),
        ("random w, signed", dict(weights="random", metric="spearman_signed"), pale, "//"),
    ])
    left.set_title("Spearman correlation of the map with the input", fontsize=8)
    _bar_group(right, table[table["analysis"] == "randomization"], methods, [
        ("|map|", dict(metric="spearman_abs"), dark, ""),
        ("signed", dict(metric="spearman_signed"), light, ""),
    ])
    right.set_title("trained vs. random weights (randomization test)", fontsize=8)


def _linear_facts(table: pd.DataFrame, d: dict) -> str:
    agreement = table[table["analysis"] == "agreement"]
    rel = agreement[agreement["metric"] == "rel_error"]["value"].max()
    spread = agreement[agreement["metric"] == "max_abs_diff_same_target"]["value"].max()
    n = table["image"].nunique()
    acc = f"test accuracy {float(d['test_acc']):.3f}; " if "test_acc" in d else ""
    shared = len(d["targets"][0]) > 1 and d["targets"][0, 0] == d["targets"][0, 1]
    same = ("the first two rows share the trained model's class, so their gradient maps are the same w. "
            if shared else "")
    return (f"Softmax-linear MNIST classifier ({acc}random w: its weights re-initialized), each map explaining the "
            f"model's own predicted class. Maps: signed, divided per panel by their largest magnitude (red +, "
            f"blue -); {same}"
            f"Bars: mean over {n} test images, whiskers 95 % bootstrap CI ({N_BOOT} resamples). Closed forms vs. "
            f"the registry (gradient = w, gradient x input = IG with a zero baseline = w * x): largest relative "
            f"error {rel:.1e}; largest difference between gradient maps of images explained for the same class: "
            f"{spread:.1e}.")
