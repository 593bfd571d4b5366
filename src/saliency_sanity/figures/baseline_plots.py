"""The sanity checks per baseline: the randomization tests of the path methods, one facet per baseline.

A run with ``randomization.baselines`` holds, besides each method's configured series, each path method
with each listed baseline (the CSV's ``baseline`` column; the archive's ``baselines``). These builders
show those series: similarity curves and label-test bars per baseline, the cascading grid of one path
method per baseline, and the gallery of each baseline next to its map. Same signature as
:mod:`saliency_sanity.figures.plots`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from saliency_sanity.contracts import NO_BASELINE
from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import FigureInputError, MapSet, stage_names, summarize
from saliency_sanity.statistics import N_BOOT
from saliency_sanity.figures.plots import (
    GAP,
    PANEL_IN,
    map_colorbar,
    map_grid,
    normalization_text,
    show_image,
    show_map,
    similarity_ylim,
)


def path_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows of the methods that take a baseline, their methods in the paper's order, and the baselines
    in the table's order (each method's configured one first)."""
    rows = table[table["baseline"] != NO_BASELINE]
    if rows.empty:
        raise FigureInputError("the table has no method with a baseline (integrated_gradients, deeplift_rescale, ...)")
    return rows, style.order_methods(rows["method"]), list(dict.fromkeys(rows["baseline"]))


def _completeness_by_baseline(m: MapSet, method: str) -> str:
    """The caption's median completeness error at stage 0 of ``method`` with each baseline, if recorded."""
    if m.completeness is None or method not in m.methods:
        return ""
    parts = [f"{baseline} {style.percent(np.median(m.completeness[m.series(method, baseline)][0]))}"
             for baseline in m.baselines_of(method) if not np.isnan(m.completeness[m.series(method, baseline)]).all()]
    return (f"{style.method_label(method)}'s median completeness error for the original model, per baseline: "
            + ", ".join(parts) + ".") if parts else ""


def baseline_curves(data: dict, model: str, *, mode: str) -> tuple[Figure, str]:
    """Similarity to the original maps against the randomization stage (rows: metrics), one column per baseline."""
    rows, methods, baselines = path_rows(data[f"{mode}_csv"])
    stages = stage_names(rows)
    metrics = style.order_metrics(rows["metric"])
    summary = summarize(rows)
    fig = Figure(figsize=(0.6 + 2.3 * len(baselines) + 2.0, 0.8 + 1.9 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(baselines), sharex=True, sharey=True, squeeze=False)
    low, high = similarity_ylim(summary[["low", "high", "mean"]].to_numpy())
    crowded = len(stages) > 5 or max(len(s) for s in stages) > 8
    for r, metric in enumerate(metrics):
        for c, baseline in enumerate(baselines):
            ax = axes[r, c]
            for method in methods:
                curve = summary[(summary["metric"] == metric) & (summary["method"] == method)
                                & (summary["baseline"] == baseline)].sort_values("stage_index")
                if curve.empty:
                    continue
                line = style.method_line(method)
                ax.plot(curve["stage_index"], curve["mean"], markersize=2.5, linewidth=1.2, **line)
                ax.fill_between(curve["stage_index"], curve["low"], curve["high"], color=line["color"], alpha=0.15,
                                linewidth=0)
            ax.axhline(0, color="0.6", linewidth=0.6, zorder=0)
            ax.set_ylim(low, high)
            ax.grid(axis="y", color="0.9", linewidth=0.6)
            if r == 0:
                ax.set_title(f"baseline: {baseline}", fontsize=8)
            if c == 0:
                ax.set_ylabel(style.metric_label(metric, 16), fontsize=8)
            if r == len(metrics) - 1:
                ax.set_xticks(range(len(stages)), stages, rotation=90 if crowded else 0, fontsize=7)
    handles = [Line2D([], [], markersize=3, label=style.method_label(m), **style.method_line(m)) for m in methods]
    fig.legend(handles=handles, loc="outside right upper", title="method", frameon=False)
    fig.supxlabel(f"{mode} randomization stage", fontsize=9)
    fig.suptitle(f"{model}: {mode} randomization of the path methods, per baseline")
    facts = (f"Mean over {rows['image'].nunique()} test images; bands: 95 % bootstrap confidence interval of the mean "
             f"({N_BOOT} resamples). Baselines: {', '.join(baselines)} (first: each method's configured one).")
    if f"{mode}_maps" in data:
        facts += " " + _completeness_by_baseline(data[f"{mode}_maps"], "integrated_gradients")
    return fig, facts.strip()


def baseline_label_bars(data: dict, model: str) -> tuple[Figure, str]:
    """Similarity of the true-label and the random-label model's maps, each path method per baseline."""
    rows, methods, baselines = path_rows(data["labels_csv"])
    randomized = rows[rows["stage_index"] == 1]
    if randomized.empty:
        raise FigureInputError("labels CSV has no rows with stage_index 1 (the random-label model)")
    summary = summarize(randomized)
    metrics = style.order_metrics(randomized["metric"])
    colours = dict(zip(baselines, style.categorical_colours(len(baselines))))
    height = 0.8 / len(baselines)
    fig = Figure(figsize=(0.8 + 2.6 * len(metrics) + 1.8, 1.0 + 0.18 * len(methods) * len(baselines)),
                 layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    low, high = similarity_ylim(summary[["low", "high", "mean"]].to_numpy())
    for ax, metric in zip(axes, metrics):
        for k, baseline in enumerate(baselines):
            picked = summary[(summary["metric"] == metric) & (summary["baseline"] == baseline)]
            picked = picked.set_index("method").reindex(methods)
            y = np.arange(len(methods)) - 0.4 + height * (k + 0.5)
            mean = picked["mean"].to_numpy()
            err = np.vstack([mean - picked["low"].to_numpy(), picked["high"].to_numpy() - mean])
            ax.barh(y, mean, height=height, xerr=err, color=colours[baseline],
                    error_kw=dict(ecolor="0.2", elinewidth=0.6, capsize=1.5))
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_xlim(low, high)
        ax.set_title(style.metric_label(metric, 18))
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    axes[0].set_yticks(range(len(methods)), [style.method_label(m, 14) for m in methods])
    axes[0].invert_yaxis()
    fig.legend(handles=[Patch(color=colours[b], label=b) for b in baselines], loc="outside right upper",
               title="baseline", frameon=False)
    fig.supxlabel("similarity of the true-label and the random-label model's maps", fontsize=9)
    fig.suptitle(f"{model}: data randomization of the path methods, per baseline")
    facts = (f"Mean over {randomized['image'].nunique()} test images; whiskers: 95 % bootstrap confidence interval "
             f"({N_BOOT} resamples). Baselines: {', '.join(baselines)} (first: each method's configured one).")
    return fig, facts


def baseline_cascading_grid(data: dict, model: str, *, method: str, image: int = 0) -> tuple[Figure, str]:
    """One image's maps by one path method (rows: baselines) as blocks are randomized from the top."""
    m: MapSet = data["cascading_maps"]
    m.require_grid_image(image)
    baselines = m.baselines_of(method)
    if not baselines:
        raise FigureInputError(f"{m.path}: no maps of {method!r}; it has {m.configured_methods}")
    fig = Figure(figsize=(1.8 + PANEL_IN * (1 + GAP + len(m.stages)) + 0.8, 0.9 + PANEL_IN * len(baselines)),
                 layout="constrained")
    axes = map_grid(fig, len(baselines), [["input"], m.stages])
    show_image(axes[0, 0], m.input_image(image))
    axes[0, 0].set_title(f"input\n(label {m.labels[image]})", fontsize=8)
    for r, baseline in enumerate(baselines):
        for s, stage in enumerate(m.stages):
            show_map(axes[r, s + 1], m.map(method, s, image, baseline=baseline), False)
            if r == 0:
                axes[r, s + 1].set_title(stage, fontsize=8 if len(stage) <= 10 else 6.5)
        axes[r, 1].set_ylabel(f"baseline\n{baseline}", rotation=0, ha="right", va="center", fontsize=8)
    map_colorbar(fig, axes[:, 1:], False, m.normalization)
    fig.suptitle(f"{model}: cascading randomization of {style.method_label(method)}, one row per baseline")
    facts = (f"Test image {image} (label {m.labels[image]}). {normalization_text(False, m.normalization)} "
             f"{_completeness_by_baseline(m, method)}")
    return fig, facts.strip()


def baseline_gallery(data: dict, model: str, *, method: str, n_images: int = 3) -> tuple[Figure, str]:
    """Each baseline (its first draw) next to the map of ``method`` from it, for the first images."""
    m: MapSet = data["cascading_maps"]
    if m.baseline_display is None:
        raise FigureInputError(f"{m.path}: no baseline_display; rerun the randomization step with a path method")
    baselines = [b for b in m.baselines_of(method) if b in m.baseline_labels]
    if not baselines:
        raise FigureInputError(f"{m.path}: no maps of {method!r} with a stored baseline")
    images = list(range(min(n_images, m.grid_images)))
    fig = Figure(figsize=(1.4 + PANEL_IN * (1 + GAP + 2 * len(baselines)) + 0.8, 1.0 + PANEL_IN * len(images)),
                 layout="constrained")
    axes = map_grid(fig, len(images), [["input"]] + [["baseline", "map"] for _ in baselines])
    for r, i in enumerate(images):
        show_image(axes[r, 0], m.input_image(i))
        axes[r, 0].set_ylabel(f"image {i}\nlabel {m.labels[i]}", rotation=0, ha="right", va="center", fontsize=8)
        for k, baseline in enumerate(baselines):
            show_image(axes[r, 1 + 2 * k], m.baseline_display[m.baseline_labels.index(baseline), i].astype(np.float32))
            show_map(axes[r, 2 + 2 * k], m.original(method, i, baseline=baseline), False)
            if r == 0:
                axes[r, 1 + 2 * k].set_title(f"x' = {baseline}", fontsize=7)
                axes[r, 2 + 2 * k].set_title(style.method_label(method, 12), fontsize=7)
    axes[0, 0].set_title("input", fontsize=8)
    map_colorbar(fig, axes[:, 2::2], False, m.normalization)
    fig.suptitle(f"{model}: each baseline x' and the map of {style.method_label(method)} from it")
    facts = (f"Test images {', '.join(map(str, images))}; each baseline's first draw, shown in the input's "
             f"colours. {normalization_text(False, m.normalization)} {_completeness_by_baseline(m, method)}")
    return fig, facts.strip()
