"""Figures of the evaluations (the attribution-baselines study): IG's convergence per quadrature rule,
the output along the path, the ablation curves, the planted shortcut and DeepLIFT's class conversion. Each reads an evaluation's tidy CSV
(:func:`~saliency_sanity.figures.inputs.load_evaluation`) and returns (figure, caption facts)."""

from __future__ import annotations


import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from saliency_sanity.contracts import NO_BASELINE
from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import FigureInputError, configured, require_arrays
from saliency_sanity.statistics import mean_ci
from saliency_sanity.figures.plots import map_colorbar, map_grid, show_image, show_map

TARGET_RULE, TARGET_STEPS = "right", 50  # the reference: 50 right-Riemann points
ERROR_FLOOR = 1e-7  # errors at float rounding are drawn here on the log axis
CONTROL = "random_noise"
_ADAPTIVE_STYLES = [("black", "*"), ("0.45", "P"), ("0.65", "X"), ("0.3", "h")]  # (colour, marker) per adaptive rule
_RULE_STYLES = {"right": "o", "midpoint": "s", "original": "v", "trapezoid": "^", "gauss_legendre": "D"}


def _baselines(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["baseline"]))


def _panels(n: int, width: float = 2.8, height: float = 2.4, columns: int = 3):
    """n panels in rows of at most ``columns`` (the spare ones hidden), at least wide enough for a title."""
    ncols, nrows = min(n, columns), -(-n // columns)
    fig = Figure(figsize=(max(5.5, 0.6 + width * ncols), 0.5 + height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def target_error(fixed: pd.DataFrame, column: str = "error") -> float | None:
    """The median error (``column``) of the reference, 50 right-Riemann points, if the study ran it."""
    errors = fixed[(fixed["rule"] == TARGET_RULE) & (fixed["steps"] == TARGET_STEPS)][column]
    return float(errors.median()) if len(errors) else None


def passes_to_reach(table: pd.DataFrame, error: float, column: str = "error") -> dict[str, float]:
    """Per rule, the fewest mean passes per image whose median error (``column``) is at most ``error`` (rules
    that never reach it are left out)."""
    reached = {}
    for rule, group in table.groupby("rule", sort=False):
        summary = group.groupby(["steps", "tolerance"], dropna=False).agg(passes=("passes", "mean"),
                                                                          error=(column, "median"))
        ok = summary[summary["error"] <= error]
        if len(ok):
            reached[rule] = float(ok["passes"].min())
    return reached


_ERRORS = {"error": ("completeness error |Σφ − Δf| / |Δf|", "a median completeness error"),
           "map_error": ("distance from the reference map", "a median distance from the reference map")}


def ig_convergence(data: dict, model: str) -> tuple[Figure, str]:
    """Completeness error (top) and distance from a many-point reference map (bottom) against gradient
    passes per image: one line per rule (median, band between the quartiles over images), adaptive IG as
    points per tolerance."""
    table: pd.DataFrame = data["eval_convergence_csv"]
    baselines = _baselines(table)
    columns = [c for c in _ERRORS if table[c].notna().any()]
    fig = Figure(figsize=(max(5.5, 0.6 + 3.6 * len(baselines)), 0.4 + 2.8 * len(columns)), layout="constrained")
    axes = fig.subplots(len(columns), len(baselines), sharex=True, sharey="row", squeeze=False)
    facts = []
    for c, baseline in enumerate(baselines):
        rows = table[table["baseline"] == baseline]
        adaptive = rows["tolerance"].notna()
        for r, column in enumerate(columns):
            ax = axes[r, c]
            for rule, group in rows[~adaptive].groupby("rule", sort=False):
                stats = group.groupby("steps")[column].quantile([0.25, 0.5, 0.75]).unstack().clip(lower=ERROR_FLOOR)
                line, = ax.plot(stats.index, stats[0.5], marker=_RULE_STYLES.get(rule, "o"), markersize=3,
                                label=rule.replace("_", "-"))
                ax.fill_between(stats.index, stats[0.25], stats[0.75], color=line.get_color(), alpha=0.15, linewidth=0)
            for (rule, group), (colour, marker) in zip(rows[adaptive].groupby("rule", sort=False), _ADAPTIVE_STYLES):
                stats = group.groupby("tolerance").agg(passes=("passes", "mean"), error=(column, "median"))
                ax.plot(stats["passes"], stats["error"].clip(lower=ERROR_FLOOR), color=colour, marker=marker,
                        markersize=6, linestyle=":", label=f"{rule} (per image; mean passes)")
            reference = target_error(rows[~adaptive], column)
            if reference is not None:
                ax.axhline(reference, color="0.5", linewidth=0.8, linestyle="--")
                ax.axvline(TARGET_STEPS / 3, color="0.5", linewidth=0.8, linestyle=":")
                reached = passes_to_reach(rows, reference, column)
                facts.append(f"baseline {baseline}, {_ERRORS[column][1]}: {TARGET_STEPS} right-Riemann points give "
                             f"{style.percent(reference)}; mean passes per image to reach it: "
                             + ", ".join(f"{rule} {passes:.3g}" for rule, passes in reached.items()))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            if r == 0:
                ax.set_title(f"baseline: {baseline}")
            if r == len(columns) - 1:
                ax.set_xlabel("gradient passes per image")
            if c == 0:
                ax.set_ylabel(_ERRORS[column][0])
    axes[0, -1].legend(loc="best", fontsize=7)
    fig.suptitle(f"{model}: IG's error against passes")
    n_images = table["image"].nunique()
    text = (f"{n_images} test images, each explained for its predicted class; lines: median over images, bands: "
            f"quartiles; markers on dotted lines: adaptive IG at each tolerance; dashed: the median error of "
            f"{TARGET_STEPS} right-Riemann points, dotted: a third of its passes (a third of {TARGET_STEPS} is "
            f"{TARGET_STEPS / 3:.3g}). The reference map: many midpoint points (evaluations.convergence.reference_steps). "
            + ("; ".join(facts) + "." if facts else f"(The study ran no {TARGET_STEPS}-point right rule to compare with.)"))
    return fig, text


def path_outputs(data: dict, model: str) -> tuple[Figure, str]:
    """The target logit along the straight path from each baseline to the image, one line per image."""
    table: pd.DataFrame = data["eval_path_outputs_csv"]
    baselines = _baselines(table)
    fig, axes = _panels(len(baselines))
    halfway = []
    for ax, baseline in zip(axes, baselines):
        rows = table[table["baseline"] == baseline]
        shares = []
        for image, group in rows.groupby("image"):
            group = group.sort_values("alpha")
            ax.plot(group["alpha"], group["logit"], linewidth=1, label=f"image {image}")
            start, end = group["logit"].iloc[0], group["logit"].iloc[-1]
            middle = np.interp(0.5, group["alpha"], group["logit"])
            if end != start:
                shares.append((middle - start) / (end - start))
        ax.set_xlabel("α (0: baseline, 1: image)")
        ax.set_ylabel("target logit")
        ax.set_title(f"baseline: {baseline}")
        if shares:
            halfway.append(f"{baseline} {style.percent(float(np.median(shares)))}")
    axes[-1].legend(loc="best", fontsize=7)
    fig.suptitle(f"{model}: target logit along the path x' + α (x − x')")
    text = (f"{table['image'].nunique()} test images, each for its predicted class. Median share of the change "
            f"f(x) - f(x') reached at α = 0.5 (over 50 %: the output saturates before the end of the path): "
            + ", ".join(halfway) + ".")
    return fig, text


def _ablation_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI over images of logit / original logit per fraction, with fraction 0 at 1."""
    ratio = rows.assign(ratio=rows["logit"] / rows["original_logit"])
    points = [(0.0, 1.0, 1.0, 1.0)]
    for fraction, group in ratio.groupby("fraction"):
        points.append((fraction, *mean_ci(group["ratio"].to_numpy())))
    return pd.DataFrame(points, columns=["fraction", "mean", "low", "high"])


def _ablation_grid(table: pd.DataFrame, lines: list[tuple[str, pd.DataFrame, str, bool]], title: str) -> Figure:
    tests, fills = list(dict.fromkeys(table["test"])), list(dict.fromkeys(table["fill"]))
    fig = Figure(figsize=(0.8 + 3.2 * len(fills) + 2.0, 0.6 + 2.6 * len(tests)), layout="constrained")
    axes = fig.subplots(len(tests), len(fills), sharex=True, sharey=True, squeeze=False)
    for r, test in enumerate(tests):
        for c, fill in enumerate(fills):
            ax = axes[r, c]
            for label, rows, colour, dashed in lines:
                curve = _ablation_curve(rows[(rows["test"] == test) & (rows["fill"] == fill)])
                ax.plot(curve["fraction"], curve["mean"], color=colour, linewidth=1.2, marker="o", markersize=2.5,
                        dashes=style.CONTROL_DASHES if dashed else (None, None), label=label)
                ax.fill_between(curve["fraction"], curve["low"], curve["high"], color=colour, alpha=0.08, linewidth=0)
            ax.axhline(0, color="0.7", linewidth=0.6)
            ax.set_title(f"{test.replace('_', '-')} ablation, {fill} fill")
            if r == len(tests) - 1:
                ax.set_xlabel("fraction of the image ablated")
            if c == 0:
                ax.set_ylabel("true-class logit / original")
    handles = [Line2D([], [], color=colour, dashes=style.CONTROL_DASHES if dashed else (None, None), label=label)
               for label, _, colour, dashed in lines]
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    fig.suptitle(title)
    return fig


def _at(rows: pd.DataFrame, fraction: float, test: str = "top_k", fill: str = "mean") -> float:
    picked = rows[(rows["test"] == test) & (rows["fill"] == fill) & np.isclose(rows["fraction"], fraction)]
    return float((picked["logit"] / picked["original_logit"]).mean()) if len(picked) else float("nan")


def _ablation_facts(table: pd.DataFrame, lines: list[tuple[str, pd.DataFrame, str, bool]]) -> str:
    first = float(np.min(table["fraction"]))
    values = ", ".join(f"{label} {_at(rows, first):.2f}" for label, rows, _, _ in lines)
    n = table["image"].nunique()
    return (f"{n} correctly classified test images, each for its true class; lines: mean over images, bands: 95 % "
            f"bootstrap CI; the lower a curve, the more the map found what the model uses. Top-{first:g} ablation "
            f"with the mean fill, logit as a fraction of the original: {values}.")


def ablation_methods(data: dict, model: str) -> tuple[Figure, str]:
    """Every method's ablation curves (path methods with their configured baseline) beside the random control."""
    table: pd.DataFrame = data["eval_ablation_csv"]
    own = configured(table)
    lines = []
    for method in style.order_methods(own["method"].unique()):
        rows = own[own["method"] == method]
        lines.append((style.method_label(method) + (" (control)" if style.is_control(method) else ""), rows,
                      style.method_colour(method), style.is_control(method)))
    fig = _ablation_grid(table, lines, f"{model}: top-k and mass-center ablation of each method's map")
    return fig, _ablation_facts(table, lines)


def ablation_baselines(data: dict, model: str, *, method: str) -> tuple[Figure, str]:
    """A path method's ablation curves with each baseline, beside the random control."""
    table: pd.DataFrame = data["eval_ablation_csv"]
    rows = table[table["method"] == method]
    if rows.empty:
        raise FigureInputError(f"the ablation table has no rows of method {method!r}; it has {sorted(set(table['method']))}")
    colours = style.categorical_colours(len(_baselines(rows)))
    lines = [(f"{style.method_label(method)}, baseline {baseline}", rows[rows["baseline"] == baseline], colour, False)
             for baseline, colour in zip(_baselines(rows), colours)]
    control = table[table["method"] == CONTROL]
    if len(control):
        lines.append((style.method_label(CONTROL) + " (control)", control, style.method_colour(CONTROL), True))
    fig = _ablation_grid(table, lines, f"{model}: ablation of {style.method_label(method)}'s maps, per baseline")
    return fig, _ablation_facts(table, lines)


def shortcut(data: dict, model: str) -> tuple[Figure, str]:
    """Accuracy with the planted code true, random and absent (left); each map's mean share of mass on the
    code's pixels, path methods per baseline, against the share of pixels it covers (right)."""
    table: pd.DataFrame = data["eval_shortcut_csv"]
    correct = table[table["measure"] == "correct"]
    accuracy = correct.groupby("condition", sort=False)["value"].mean()
    area = float(table[table["measure"] == "area"]["value"].mean())
    mass = table[table["measure"] == "mass_on_shortcut"]
    bars = []
    for method in style.order_methods(mass["method"].unique()):
        for baseline, rows in mass[mass["method"] == method].groupby("baseline", sort=False):
            label = style.method_label(method) + ("" if baseline == NO_BASELINE else f" [{baseline}]")
            bars.append((label, *mean_ci(rows["value"].to_numpy()), style.method_colour(method)))
    fig = Figure(figsize=(9.0, 1.2 + 0.22 * len(bars)), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 2.4])
    left.bar(range(len(accuracy)), accuracy.to_numpy(), color="0.45")
    left.set_xticks(range(len(accuracy)), [c.replace("_", " ") for c in accuracy.index], rotation=20)
    left.set_ylim(0, 1.05)
    left.set_ylabel("test accuracy")
    left.set_title("the planted code is ...")
    positions = np.arange(len(bars))[::-1]
    for y, (label, mean, low, high, colour) in zip(positions, bars):
        right.barh(y, mean, xerr=[[mean - low], [high - mean]], color=colour, error_kw={"linewidth": 0.8})
    right.set_yticks(positions, [b[0] for b in bars], fontsize=7)
    right.axvline(area, color="black", linestyle="--", linewidth=0.8, label=f"share of pixels ({style.percent(area)})")
    right.set_xlim(0, 1)
    right.set_xlabel("share of the map's absolute mass on the planted code")
    right.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{model}: does the model use the planted code, and which maps show it?")
    ranked = sorted(bars, key=lambda b: -b[1])
    text = (f"{correct['image'].nunique()} test images. Accuracy with the code of the true class "
            f"{style.percent(accuracy.get('true_code', np.nan))}, of a random class "
            f"{style.percent(accuracy.get('random_code', np.nan))}, without it {style.percent(accuracy.get('no_code', np.nan))}. "
            f"Mean share of mass on the code (true-code images, predicted class; bars: 95 % bootstrap CI): "
            + ", ".join(f"{label} {style.percent(mean)}" for label, mean, *_ in ranked)
            + f"; the code covers {style.percent(area)} of the pixels.")
    return fig, text


SHORTCUT_ARRAYS = ("images", "mask", "labels", "predicted", "methods", "baselines", "maps")


def shortcut_maps(data: dict, model: str) -> tuple[Figure, str]:
    """The maps of the first true-code test images (rows) by every method, and every path method per baseline
    (columns), with the planted code's pixels outlined and each map's share of mass on them."""
    arrays = data["eval_shortcut_maps"]
    require_arrays(arrays, SHORTCUT_ARRAYS, f"{model} shortcut archive")
    series = list(zip(arrays["methods"].tolist(), arrays["baselines"].tolist()))
    order = {m: i for i, m in enumerate(style.order_methods([m for m, _ in series]))}
    columns = sorted(range(len(series)), key=lambda k: (style.is_control(series[k][0]), order[series[k][0]], k))
    maps, mask = arrays["maps"].astype(np.float32), arrays["mask"].astype(bool)
    n_images = len(arrays["images"])
    fig = Figure(figsize=(1.4 + 0.85 * (1 + len(columns)) + 0.8, 1.2 + 0.85 * n_images), layout="constrained")
    axes = map_grid(fig, n_images, [["input"], [series[k] for k in columns]])
    for r in range(n_images):
        show_image(axes[r, 0], arrays["images"][r])
        axes[r, 0].contour(mask[r], levels=[0.5], colors="red", linewidths=0.6)
        axes[r, 0].set_ylabel(f"label {arrays['labels'][r]}\npred {arrays['predicted'][r]}", rotation=0,
                              ha="right", va="center", fontsize=7)
        for c, k in enumerate(columns, start=1):
            show_map(axes[r, c], maps[k, r], False)
            axes[r, c].contour(mask[r], levels=[0.5], colors="red", linewidths=0.5)
            total = maps[k, r].sum()
            share = maps[k, r][mask[r]].sum() / total if total > 0 else 0.0
            axes[r, c].text(0.03, 0.03, style.percent(share), transform=axes[r, c].transAxes, fontsize=6,
                            color="yellow", va="bottom")
            if r == 0:
                method, baseline = series[k]
                title = style.method_label(method, 11) + ("" if baseline == NO_BASELINE else f"\n[{baseline}]")
                axes[r, c].set_title(title, fontsize=6, color="0.35" if style.is_control(method) else "black")
    axes[0, 0].set_title("input", fontsize=7)
    map_colorbar(fig, axes[:, 1:], False, "max")
    fig.suptitle(f"{model}: maps of images carrying the code of their class (outlined in red)")
    area = mask.mean()
    facts = (f"The first {n_images} test images with the code of their true class; each map explains the predicted "
             f"class, absolute values divided by the map's maximum. Corner: the map's share of mass on the code, "
             f"which covers {style.percent(area)} of the pixels.")
    return fig, facts


def _entry_label(label: str, method: str, width: int | None = None) -> str:
    """A class-conversion entry's display name: the method's own label unless the config named the entry."""
    if label == method:
        return style.method_label(method, width)
    return style.wrap(label, width)


def class_conversion(data: dict, model: str) -> tuple[Figure, str]:
    """Per task (panels), the drop in the log-odds of c0 against ct after erasing each method's top pixels:
    one box per configured method entry (its label), coloured by its method."""
    table: pd.DataFrame = data["eval_class_conversion_csv"]
    tasks = list(dict.fromkeys(table["task"]))
    entries = list(dict.fromkeys(zip(table["label"], table["method"])))
    fig, axes = _panels(len(tasks), width=3.4, height=0.9 + 0.32 * len(entries), columns=2)
    positions = np.arange(len(entries))[::-1]
    means: dict[str, list[float]] = {}
    for ax, task in zip(axes, tasks):
        rows = table[table["task"] == task]
        drops = [rows[rows["label"] == label]["log_odds_drop"].to_numpy() for label, _ in entries]
        boxes = ax.boxplot(drops, positions=positions, orientation="horizontal", widths=0.6, patch_artist=True, showfliers=False,
                           medianprops={"color": "black", "linewidth": 0.8})
        for patch, (_, method) in zip(boxes["boxes"], entries):
            patch.set_facecolor(style.method_colour(method))
        ax.set_yticks(positions, [_entry_label(label, method) for label, method in entries], fontsize=7)
        ax.axvline(0, color="0.5", linewidth=0.6)
        source, target = task.split("->")
        ax.set_title(f"{source} → {target} ({rows['image'].nunique()} images)", fontsize=9)
        ax.set_xlabel("log-odds drop (logit c0 − logit ct)")
        for (label, method), values in zip(entries, drops):
            means.setdefault(_entry_label(label, method), []).append(float(np.mean(values)))
    fig.suptitle(f"{model}: class conversion\nthe log-odds drop after erasing each map's top "
                 f"{int(table['erased'].max())} pixels", fontsize=10)
    ranked = sorted(means.items(), key=lambda item: -np.mean(item[1]))
    facts = (f"Tasks {', '.join(tasks)}; up to {int(table['erased'].max())} pixels erased (set to 0, the reference) per "
             f"image, those with the largest positive S_c0 − S_ct. Mean drop over the tasks, best first: "
             + ", ".join(f"{label} {np.mean(values):.2f}" for label, values in ranked) + ".")
    return fig, facts


CONVERSION_ARRAYS = ("tasks", "methods", "labels", "images", "differences", "erased")


def class_conversion_maps(data: dict, model: str) -> tuple[Figure, str]:
    """Each task's first image (rows) and each method's S_c0 - S_ct (columns; red: evidence for c0, blue:
    for ct, scaled by the map's own max |value|), with the erased pixels outlined."""
    arrays = data["eval_class_conversion_maps"]
    require_arrays(arrays, CONVERSION_ARRAYS, f"{model} class conversion archive")
    tasks, labels, methods = arrays["tasks"].tolist(), arrays["labels"].tolist(), arrays["methods"].tolist()
    differences, erased = arrays["differences"].astype(np.float32), arrays["erased"].astype(bool)
    fig = Figure(figsize=(1.6 + 0.9 * (1 + len(labels)) + 0.8, 1.3 + 0.9 * len(tasks)), layout="constrained")
    axes = map_grid(fig, len(tasks), [["input"], labels])
    for r, task in enumerate(tasks):
        show_image(axes[r, 0], arrays["images"][r])
        axes[r, 0].set_ylabel(task.replace("->", " → "), rotation=0, ha="right", va="center", fontsize=8)
        for c, label in enumerate(labels, start=1):
            difference = differences[r, c - 1]
            scale = np.abs(difference).max()
            show_map(axes[r, c], difference / scale if scale > 0 else difference, True)
            if erased[r, c - 1].any():
                axes[r, c].contour(erased[r, c - 1], levels=[0.5], colors="black", linewidths=0.5)
            if r == 0:
                axes[r, c].set_title(_entry_label(label, methods[c - 1], 14), fontsize=6)
    axes[0, 0].set_title("input", fontsize=7)
    map_colorbar(fig, axes[:, 1:], True, "max")
    fig.suptitle(f"{model}: S_c0 − S_ct per method, erased pixels outlined")
    facts = (f"The first test image of each task; each map is the method's map for the source class minus its map "
             f"for the target class, summed over channels and divided by its maximum absolute value; the outlined "
             f"pixels (at most {int(erased.sum(axis=(2, 3)).max())}) are the ones erased.")
    return fig, facts
