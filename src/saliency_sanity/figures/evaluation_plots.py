"""Figures of the evaluations (the attribution-baselines study): IG's convergence per quadrature rule,
the output along the path, and the ablation curves. Each reads an evaluation's tidy CSV
(:func:`~saliency_sanity.figures.inputs.load_evaluation`) and returns (figure, caption facts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import mean_ci

TARGET_RULE, TARGET_STEPS = "right", 50  # the reference: 50 right-Riemann points
ERROR_FLOOR = 1e-7  # errors at float rounding are drawn here on the log axis
PATH_METHOD = "integrated_gradients"
CONTROL = "random_noise"
_RULE_STYLES = {"right": "o", "midpoint": "s", "original": "v", "trapezoid": "^", "gauss_legendre": "D"}


def _baselines(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["baseline"]))


def _panels(n: int, width: float = 3.6, height: float = 3.0, sharey: bool = True):
    fig = Figure(figsize=(max(5.5, 0.6 + width * n), height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, sharey=sharey, squeeze=False)[0])
    return fig, axes


def target_error(fixed: pd.DataFrame) -> float | None:
    """The median completeness error of the reference (50 right-Riemann points), if the study ran it."""
    errors = fixed[(fixed["rule"] == TARGET_RULE) & (fixed["steps"] == TARGET_STEPS)]["error"]
    return float(errors.median()) if len(errors) else None


def passes_to_reach(table: pd.DataFrame, error: float) -> dict[str, float]:
    """Per rule, the fewest mean passes per image whose median error is at most ``error`` (rules that never
    reach it are left out)."""
    reached = {}
    for rule, group in table.groupby("rule", sort=False):
        summary = group.groupby(["steps", "tolerance"], dropna=False).agg(passes=("passes", "mean"),
                                                                          error=("error", "median"))
        ok = summary[summary["error"] <= error]
        if len(ok):
            reached[rule] = float(ok["passes"].min())
    return reached


def ig_convergence(data: dict, model: str) -> tuple[Figure, str]:
    """Completeness error against gradient passes per image: one line per rule (median, band between the
    quartiles over images), adaptive IG as points per tolerance."""
    table: pd.DataFrame = data["eval_convergence_csv"]
    baselines = _baselines(table)
    fig, axes = _panels(len(baselines))
    facts = []
    for ax, baseline in zip(axes, baselines):
        rows = table[table["baseline"] == baseline]
        adaptive = rows["tolerance"].notna()
        for rule, group in rows[~adaptive].groupby("rule", sort=False):
            stats = group.groupby("steps")["error"].quantile([0.25, 0.5, 0.75]).unstack().clip(lower=ERROR_FLOOR)
            line, = ax.plot(stats.index, stats[0.5], marker=_RULE_STYLES.get(rule, "o"), markersize=3,
                            label=rule.replace("_", "-"))
            ax.fill_between(stats.index, stats[0.25], stats[0.75], color=line.get_color(), alpha=0.15, linewidth=0)
        for rule, group in rows[adaptive].groupby("rule", sort=False):
            stats = group.groupby("tolerance").agg(passes=("passes", "mean"), error=("error", "median"))
            ax.plot(stats["passes"], stats["error"].clip(lower=ERROR_FLOOR), color="black", marker="*", markersize=7,
                    linestyle=":", label=f"{rule} (per image; mean passes)")
        reference = target_error(rows[~adaptive])
        if reference is not None:
            ax.axhline(reference, color="0.5", linewidth=0.8, linestyle="--")
            ax.axvline(TARGET_STEPS / 3, color="0.5", linewidth=0.8, linestyle=":")
            reached = passes_to_reach(rows, reference)
            facts.append(f"baseline {baseline}: {TARGET_STEPS} right-Riemann points give a median error of "
                         f"{style.percent(reference)}; mean passes per image to reach it: "
                         + ", ".join(f"{rule} {passes:.3g}" for rule, passes in reached.items())
                         + f" (a third of {TARGET_STEPS} is {TARGET_STEPS / 3:.3g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("gradient passes per image")
        ax.set_title(f"baseline: {baseline}")
    axes[0].set_ylabel("completeness error |Σφ − Δf| / |Δf|")
    axes[-1].legend(loc="best", fontsize=7)
    fig.suptitle(f"{model}: IG completeness error against passes")
    n_images = table["image"].nunique()
    text = (f"{n_images} test images, each explained for its predicted class; lines: median over images, bands: "
            f"quartiles; stars: adaptive IG at each tolerance; dashed: the median error of {TARGET_STEPS} "
            f"right-Riemann points, dotted: a third of its passes. "
            + ("; ".join(facts) + "." if facts else f"(The study ran no {TARGET_STEPS}-point right rule to compare with.)"))
    return fig, text


def path_outputs(data: dict, model: str) -> tuple[Figure, str]:
    """The target logit along the straight path from each baseline to the image, one line per image."""
    table: pd.DataFrame = data["eval_path_outputs_csv"]
    baselines = _baselines(table)
    fig, axes = _panels(len(baselines), width=2.8, sharey=False)
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
        ax.set_title(f"baseline: {baseline}")
        if shares:
            halfway.append(f"{baseline} {style.percent(float(np.median(shares)))}")
    axes[0].set_ylabel("target logit")
    axes[-1].legend(loc="best", fontsize=7)
    fig.suptitle(f"{model}: target logit along the path x' + α (x − x')")
    text = (f"{table['image'].nunique()} test images, each for its predicted class. Median share of the change "
            f"f(x) - f(x') reached at α = 0.5 (saturation: well over half early): " + ", ".join(halfway) + ".")
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
    configured = table.groupby("method")["baseline"].first()  # each method's rows start with its configured baseline
    lines = []
    for method in style.order_methods(table["method"].unique()):
        rows = table[(table["method"] == method) & (table["baseline"] == configured[method])]
        lines.append((style.method_label(method) + (" (control)" if style.is_control(method) else ""), rows,
                      style.method_colour(method), style.is_control(method)))
    fig = _ablation_grid(table, lines, f"{model}: top-k and mass-center ablation of each method's map")
    return fig, _ablation_facts(table, lines)


def ablation_baselines(data: dict, model: str) -> tuple[Figure, str]:
    """Integrated Gradients' ablation curves with each baseline, beside the random control."""
    table: pd.DataFrame = data["eval_ablation_csv"]
    ig = table[table["method"] == PATH_METHOD]
    colours = style.categorical_colours(len(_baselines(ig)))
    lines = [(f"IG, baseline {baseline}", ig[ig["baseline"] == baseline], colour, False)
             for baseline, colour in zip(_baselines(ig), colours)]
    control = table[table["method"] == CONTROL]
    if len(control):
        lines.append((style.method_label(CONTROL) + " (control)", control, style.method_colour(CONTROL), True))
    fig = _ablation_grid(table, lines, f"{model}: ablation of Integrated Gradients' maps, per baseline")
    return fig, _ablation_facts(table, lines)
