"""The figure builders: each takes the loaded inputs and returns a matplotlib Figure.

Every builder has the signature ``build(data, model, **options) -> (Figure, facts)``, where
``data`` maps an input key (``"cascading_maps"``, ``"labels_csv"``, ...) to a loaded
:class:`MapSet` or similarity table and ``facts`` is a caption sentence read off the data
(which image, how many images). Figures are built on bare ``Figure`` objects (Agg canvas), never
through pyplot, so nothing global is left behind.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import FigureInputError, MapSet, configured, stage_names, summarize
from saliency_sanity.statistics import N_BOOT

PANEL_IN = 0.95  # inches per map panel
GAP = 0.25  # width of the spacer before the model-free controls, in panels
ABS_CMAP = "gray"  # the paper's maps: white = most important
SIGNED_CMAP = "RdBu_r"


# ---------------------------------------------------------------- map grids


def _split_controls(methods: list[str]) -> tuple[list[str], list[str]]:
    ordered = style.order_methods(methods)
    controls = [m for m in ordered if style.is_control(m)]
    return [m for m in ordered if m not in controls], controls


def map_grid(fig: Figure | SubFigure, n_rows: int, columns: list[list[str]], *, row_groups=None) -> np.ndarray:
    """A (rows, columns) array of panel axes; a thin spacer separates consecutive column groups.

    ``columns`` is a list of column groups (e.g. [input], [methods], [controls]); ``row_groups``
    likewise splits rows (default: one group). Empty groups are skipped.
    """
    col_groups = [g for g in columns if g]
    row_groups = [g for g in (row_groups or [n_rows]) if g]
    widths, col_index = _with_spacers([len(g) for g in col_groups])
    heights, row_index = _with_spacers(row_groups)
    spec = fig.add_gridspec(len(heights), len(widths), width_ratios=widths, height_ratios=heights)
    axes = np.empty((len(row_index), len(col_index)), dtype=object)
    for r, gr in enumerate(row_index):
        for c, gc in enumerate(col_index):
            axes[r, c] = ax = fig.add_subplot(spec[gr, gc])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    return axes


def _with_spacers(group_sizes: list[int]) -> tuple[list[float], list[int]]:
    """Gridspec ratios with a GAP-wide spacer between groups, and the indices of the real cells."""
    ratios, index = [], []
    for g, size in enumerate(group_sizes):
        if g:
            ratios.append(GAP)
        index.extend(range(len(ratios), len(ratios) + size))
        ratios.extend([1.0] * size)
    return ratios, index


def show_map(ax: Axes, stored: np.ndarray, signed: bool) -> None:
    """One stored, already normalized (H, W) map: absolute on [0, 1], signed on [-1, 1]."""
    panel = style.display_map(stored, signed)
    if panel is None:
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="0.4")
        return
    if signed:
        ax.imshow(panel, cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="nearest")
    else:
        ax.imshow(panel, cmap=ABS_CMAP, vmin=0, vmax=1, interpolation="nearest")


def show_image(ax: Axes, image: np.ndarray) -> None:
    array, cmap = style.display_image(image)
    ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")


def title_method(ax: Axes, method: str) -> None:
    control = style.is_control(method)
    ax.set_title(style.method_label(method, 12), fontsize=8, color="0.35" if control else "black",
                 style="italic" if control else "normal")


_COLORBAR_LABELS = {
    ("max", False): "|map| / max |map|",
    ("max", True): "signed map / max |map|",
    ("percentile", False): "|map| / P99 |map|, clipped",
    ("percentile", True): "signed map / P99 |map|, clipped",
}


def map_colorbar(fig: Figure | SubFigure, axes: np.ndarray, signed: bool, normalization: str = "max") -> None:
    norm = Normalize(-1, 1) if signed else Normalize(0, 1)
    cmap = colormaps[SIGNED_CMAP if signed else ABS_CMAP]
    label = _COLORBAR_LABELS[normalization, signed]
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes.flat), shrink=min(0.6, 3 / axes.shape[0]),
                       aspect=15, pad=0.02, label=label)
    bar.ax.tick_params(labelsize=7)


def normalization_text(signed: bool, normalization: str) -> str:
    """How the maps shown were normalized, from the archive's record (``max`` or ``percentile``)."""
    if normalization == "percentile":
        if signed:
            return ("Signed maps summed over channels, divided per panel by the 99th percentile of their magnitude "
                    "and clipped to [-1, 1] (red +, blue -).")
        return ("Absolute maps summed over channels, divided per panel by their 99th percentile and clipped to "
                "[0, 1] (white: most important).")
    if signed:
        return "Signed maps summed over channels, divided per panel by their largest magnitude (red +, blue -)."
    return "Absolute maps summed over channels, divided per panel by their maximum (white: most important)."


def explained_class(m: MapSet) -> str:
    """What the maps explain, read off the targets the runner recorded."""
    if np.array_equal(m.targets, m.predictions):
        return "Each map explains the predicted class of the model at its own stage."
    if np.array_equal(m.targets, np.broadcast_to(m.labels, m.targets.shape)):
        return "Each map explains the true label."
    return "Each map explains the target class recorded by the runner."


def _verdict(m: MapSet, image: int, stage: int = 0) -> str:
    """A panel's mark of whether the model at ``stage`` predicted the image's label."""
    return "\u2713" if m.predictions[stage, image] == m.labels[image] else "\u2717"


def _accuracy_text(m: MapSet) -> str:
    """The caption's count of images the original model classified correctly (marked in the panels)."""
    correct = int((m.predictions[0] == m.labels).sum())
    return (f"The original model predicts the label of {correct} of {m.n_images} images "
            "(\u2713 correct, \u2717 wrong in the panels).")


def _completeness_text(m: MapSet, tolerance: float = 0.05) -> str:
    """What the caption says of the completeness error the runner recorded (IG, DeepLIFT), if any."""
    if m.completeness is None:
        return ""
    parts = []
    for method in m.configured_methods:
        errors = m.completeness[m.series(method)]
        if np.isnan(errors).all():
            continue
        first = errors[0]
        parts.append(f"{style.method_label(method)} median {style.percent(np.median(first))}, max {style.percent(first.max())} "
                     f"({int((first <= tolerance).sum())} of {first.size} maps within {style.percent(tolerance)}) for "
                     f"the original model, median {style.percent(np.median(errors))} over all stages")
    return ("Completeness error |sum of the map - (f(x) - f(baseline))| / |f(x) - f(baseline)|: "
            + "; ".join(parts) + ".") if parts else ""


def _model_facts(m: MapSet) -> str:
    """The caption's facts about the run's model: its accuracy and, for path methods, completeness."""
    return " ".join(part for part in (_accuracy_text(m), _completeness_text(m)) if part)


def _pick_images(m: MapSet, n_images: int, *, every_stage: bool = False) -> list[int]:
    """The first n images; with ``every_stage``, only those whose maps the archive keeps at every stage."""
    return list(range(min(n_images, m.grid_images if every_stage else m.n_images)))


def methods_vs_edges(data: dict, model: str, *, n_images: int = 3) -> tuple[Figure, str]:
    """Paper Fig. 1: each method's map of the trained model beside model-free controls."""
    m: MapSet = data["cascading_maps"]
    methods, controls = _split_controls(m.configured_methods)
    images = _pick_images(m, n_images)
    n_cols = 1 + len(methods) + len(controls)
    fig = Figure(figsize=(1.2 + PANEL_IN * (n_cols + GAP * 2) + 0.8, 0.7 + PANEL_IN * len(images)),
                 layout="constrained")
    axes = map_grid(fig, len(images), [["input"], methods, controls])
    for r, i in enumerate(images):
        show_image(axes[r, 0], m.input_image(i))
        axes[r, 0].set_ylabel(f"image {i}\nlabel {m.labels[i]}\npred {m.predictions[0, i]} {_verdict(m, i)}", fontsize=8,
                              rotation=0, ha="right", va="center")  # horizontal: longer than a panel is tall
        for c, method in enumerate(methods + controls, start=1):
            show_map(axes[r, c], m.original(method, i), signed=False)
            if r == 0:
                title_method(axes[r, c], method)
    axes[0, 0].set_title("input", fontsize=8)
    map_colorbar(fig, axes[:, 1:], False, m.normalization)
    fig.suptitle(f"{model}: saliency maps of the original (unrandomized) model vs. model-free controls (grey titles)")
    facts = (f"Test images {_list(images)}. {normalization_text(False, m.normalization)} {explained_class(m)} "
             f"{_model_facts(m)}")
    return fig, facts


def cascading_grid(data: dict, model: str, *, image: int = 0, signed: bool = False) -> tuple[Figure, str]:
    """Paper Fig. 2: one image's maps (rows: methods) as blocks are randomized from the top."""
    m: MapSet = data["cascading_maps"]
    if not 0 <= image < m.n_images:
        raise FigureInputError(f"{m.path}: no image {image}; it has {m.n_images}")
    m.require_grid_image(image)  # every stage's maps are kept for the first grid_images images only
    methods, controls = _split_controls(m.configured_methods)
    rows = methods + controls
    n_stages = len(m.stages)
    fig = Figure(figsize=(1.8 + PANEL_IN * (1 + GAP + n_stages) + 0.8, 0.9 + PANEL_IN * (len(rows) + GAP)),
                 layout="constrained")
    axes = map_grid(fig, len(rows), [["input"], m.stages], row_groups=[len(methods), len(controls)])
    title_size = 8 if max(len(s) for s in m.stages) <= 10 else 6.5  # Inception's long block names
    show_image(axes[0, 0], m.input_image(image))
    axes[0, 0].set_title(f"input\n(label {m.labels[image]})", fontsize=8)
    for r, method in enumerate(rows):
        for s, stage in enumerate(m.stages):
            ax = axes[r, s + 1]
            show_map(ax, m.map(method, s, image, signed), signed)
            if r == 0:
                ax.set_title(f"{stage}\npred {m.predictions[s, image]} {_verdict(m, image, s)}", fontsize=title_size)
        label_ax = axes[r, 1]
        control = style.is_control(method)
        label_ax.set_ylabel(style.method_label(method, 14), rotation=0, ha="right", va="center", fontsize=8,
                            color="0.35" if control else "black", style="italic" if control else "normal")
    map_colorbar(fig, axes[:, 1:], signed, m.normalization)
    kind = "signed" if signed else "absolute"
    fig.suptitle(f"{model}: cascading randomization, {kind} maps (columns: randomized down to this block)")
    facts = (f"Test image {image} (label {m.labels[image]}); the column title gives the block randomized last "
             f"(with all blocks above it) and that model's prediction. {normalization_text(signed, m.normalization)} "
             f"{explained_class(m)} {_model_facts(m)}")
    return fig, facts


# ---------------------------------------------------------------- similarity curves


def _list(items) -> str:
    return ", ".join(str(i) for i in items)


def similarity_ylim(values: np.ndarray) -> tuple[float, float]:
    """-0.2 to 1.05, widened only if the data go beyond, so panels compare across figures."""
    finite = values[np.isfinite(values)]
    low = min(-0.2, finite.min() - 0.05) if finite.size else -0.2
    high = max(1.05, finite.max() + 0.05) if finite.size else 1.05
    return low, high


def _method_handles(methods: list[str]) -> list[Line2D]:
    handles = []
    for method in methods:
        control = style.is_control(method)
        handles.append(Line2D([], [], markersize=3, **style.method_line(method),
                              label=style.method_label(method) + (" (control)" if control else "")))
    return handles


def _n_images(table: pd.DataFrame) -> int:
    return int(table["image"].nunique())


def similarity_curves(data: dict, model: str, *, mode: str) -> tuple[Figure, str]:
    """Paper Figs. 3 and 4: similarity to the original maps vs randomization stage, per metric."""
    table = configured(data[f"{mode}_csv"])
    stages = stage_names(table)
    metrics = style.order_metrics(table["metric"])
    methods = style.order_methods(table["method"])
    summary = summarize(table)
    panel_w = max(2.6, 0.2 * len(stages) + 1.2)
    fig = Figure(figsize=(panel_w * len(metrics) + 2.2, 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    low, high = similarity_ylim(summary[["low", "high", "mean"]].to_numpy())
    crowded = len(stages) > 6 or max(len(s) for s in stages) > 8
    band_alpha = 0.18 if len(methods) <= 6 else 0.08  # many overlapping bands would hide the lines
    for ax, metric in zip(axes, metrics):
        for method in methods:
            rows = summary[(summary["metric"] == metric) & (summary["method"] == method)]
            rows = rows.sort_values("stage_index")
            x = rows["stage_index"].to_numpy()
            line = style.method_line(method)
            ax.plot(x, rows["mean"], markersize=3, linewidth=1.2, **line)
            ax.fill_between(x, rows["low"], rows["high"], color=line["color"], alpha=band_alpha, linewidth=0)
        ax.axhline(0, color="0.6", linewidth=0.6, zorder=0)
        ax.set_title(style.metric_label(metric))
        ax.set_xticks(range(len(stages)), stages, rotation=45 if crowded else 0, ha="right" if crowded else "center")
        ax.set_ylim(low, high)
        ax.grid(axis="y", color="0.9", linewidth=0.6)
    axes[0].set_ylabel("similarity to the original map")
    xlabel = {
        "cascading": "cascading randomization: blocks randomized from the logits down to this one",
        "independent": "independent randomization: the one block randomized",
    }.get(mode, f"{mode} randomization stage")
    fig.supxlabel(xlabel, fontsize=9)
    fig.legend(handles=_method_handles(methods), loc="outside right upper", title="method", frameon=False)
    fig.suptitle(f"{model}: {mode} randomization")
    facts = (f"Mean over {_n_images(table)} test images; bands: 95 % bootstrap confidence interval of the "
             f"mean ({N_BOOT} resamples). Markers: one shape per family of methods; dashed: model-free controls.")
    if f"{mode}_maps" in data:
        facts += " " + _model_facts(data[f"{mode}_maps"])
    return fig, facts


# ---------------------------------------------------------------- label randomization


def label_randomization(data: dict, model: str, *, n_images: int = 2, signed: bool = False) -> tuple[Figure, str]:
    """Paper Fig. 5: maps of the true-label vs random-label model, and their similarity."""
    m: MapSet = data["labels_maps"]
    table = configured(data["labels_csv"])
    if len(m.stages) < 2:
        raise FigureInputError(f"{m.path}: expected stages (original, random_labels), got {m.stages}")
    images = _pick_images(m, n_images, every_stage=True)
    methods, controls = _split_controls(m.configured_methods)
    n_cols = 1 + len(methods) + len(controls)
    bar_methods = style.order_methods(table["method"])
    maps_h = 0.7 + PANEL_IN * 2 * len(images)
    bars_h = 1.0 + 0.2 * len(bar_methods)
    fig = Figure(figsize=(1.6 + PANEL_IN * (n_cols + GAP * 2) + 0.8, maps_h + bars_h), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[maps_h, bars_h])
    _label_maps(top, m, images, methods + controls, [["input"], methods, controls], signed)
    _label_bars(bottom, table, bar_methods)
    fig.suptitle(f"{model}: data randomization (true vs. random labels)")
    n = _n_images(table)
    facts = (f"Top: test images {_list(images)}. {normalization_text(signed, m.normalization)} {explained_class(m)} "
             f"{_model_facts(m)} Bottom: mean over {n} test images; "
             f"whiskers: 95 % bootstrap confidence interval ({N_BOOT} resamples); hatched: model-free controls.")
    return fig, facts


def _label_maps(fig: SubFigure, m: MapSet, images: list[int], methods: list[str], columns, signed: bool) -> None:
    axes = map_grid(fig, 2 * len(images), columns)
    stage_titles = ("true labels", "random labels")
    for k, i in enumerate(images):
        for s in (0, 1):
            r = 2 * k + s
            if s == 0:
                show_image(axes[r, 0], m.input_image(i))
            axes[r, 0].set_ylabel(f"image {i}\n{stage_titles[s]}\npred {m.predictions[s, i]} {_verdict(m, i, s)}", fontsize=8,
                                  rotation=0, ha="right", va="center")
            for c, method in enumerate(methods, start=1):
                show_map(axes[r, c], m.map(method, s, i, signed), signed)
                if r == 0:
                    title_method(axes[r, c], method)
    axes[0, 0].set_title("input", fontsize=8)
    map_colorbar(fig, axes[:, 1:], signed, m.normalization)


def _label_bars(fig: SubFigure, table: pd.DataFrame, methods: list[str]) -> None:
    randomized = table[table["stage_index"] == 1]
    if randomized.empty:
        raise FigureInputError("labels CSV has no rows with stage_index 1 (the random-label model)")
    summary = summarize(randomized)
    metrics = style.order_metrics(randomized["metric"])
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    low, high = similarity_ylim(summary[["low", "high", "mean"]].to_numpy())
    y = np.arange(len(methods))
    for ax, metric in zip(axes, metrics):
        rows = summary[summary["metric"] == metric].set_index("method").reindex(methods)
        mean = rows["mean"].to_numpy()
        err = np.vstack([mean - rows["low"].to_numpy(), rows["high"].to_numpy() - mean])
        bars = ax.barh(y, mean, xerr=err, color=[style.method_colour(mt) for mt in methods],
                       error_kw=dict(ecolor="0.2", elinewidth=0.8, capsize=2), height=0.7)
        for bar, method in zip(bars, methods):
            if style.is_control(method):
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_xlim(low, high)
        ax.set_title(style.metric_label(metric, 18))
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    axes[0].set_yticks(y, [style.method_label(mt) for mt in methods])
    axes[0].invert_yaxis()
    fig.supxlabel("similarity of the true-label and the random-label model's maps", fontsize=9)
