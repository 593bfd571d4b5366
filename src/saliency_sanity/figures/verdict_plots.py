"""Figures of the protocol matrix (:mod:`saliency_sanity.evaluation.protocols`): the verdict matrix, where a
protocol setting flips a verdict, and what randomization does to the scale of each block's activations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from saliency_sanity.figures import style
from saliency_sanity.figures.inputs import require_arrays
from saliency_sanity.verdicts import ENTROPY, VERDICTS

VERDICT_COLOURS = {"pass": "#a6dba0", "unclear": "#eeeeee", "fail": "#f4a582"}
ACTIVATION_ARRAYS = ("activation_blocks", "activation_settings", "activation_rms")


def _columns(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(variant, setting) in the order the table has them, the reference setting of a variant first."""
    return list(dict.fromkeys(zip(table["variant"], table["setting"])))


def _metrics(table: pd.DataFrame) -> list[str]:
    return [m for m in style.order_metrics(set(table["metric"]) - {ENTROPY})] + \
        ([ENTROPY] if ENTROPY in set(table["metric"]) else [])


def _metric_title(metric: str) -> str:
    return "entropy rise\nlog(H randomized / H original)" if metric == ENTROPY else style.metric_label(metric, 22)


def _grid(table: pd.DataFrame, metric: str, methods: list[str], value: str):
    """(columns, array methods x columns of ``value``) of one metric's cells; NaN / None where a cell is absent."""
    rows = table[table["metric"] == metric]
    columns = _columns(rows)
    cells = rows.set_index(["method", "variant", "setting"])[value]
    grid = np.array([[cells.get((m, v, s), None) for v, s in columns] for m in methods], dtype=object)
    return columns, grid


def _panel_figure(table: pd.DataFrame, methods: list[str], metrics: list[str]) -> tuple[Figure, list]:
    widths = [max(1, len(_columns(table[table["metric"] == m]))) for m in metrics]
    fig = Figure(figsize=(2.2 + 0.42 * sum(widths) + 0.5 * len(metrics), 1.8 + 0.24 * len(methods)),
                 layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    return fig, list(axes)


def _column_label(variant: str, setting: str) -> str:
    return f"{variant}\n{setting.replace('_', ' ')}"


def verdict_matrix(data: dict, model: str) -> tuple[Figure, str]:
    """Rows: methods; columns: (variant, protocol setting), one panel per metric; cells coloured by the verdict
    (pass: the CI on the passing side of tau; fail: on the other; unclear: it contains tau) and labelled with the
    mean score, bold where the setting flips the reference setting's verdict."""
    table: pd.DataFrame = data["eval_protocols_csv"]
    methods = style.order_methods(table["method"].unique())
    metrics = _metrics(table)
    fig, axes = _panel_figure(table, methods, metrics)
    codes = {v: i for i, v in enumerate(VERDICTS)}
    cmap = ListedColormap([VERDICT_COLOURS[v] for v in VERDICTS])
    for ax, metric in zip(axes, metrics):
        columns, verdicts = _grid(table, metric, methods, "verdict")
        _, scores = _grid(table, metric, methods, "score")
        _, flipped = _grid(table, metric, methods, "flipped")
        shown = np.array([[codes.get(v, np.nan) if v is not None else np.nan for v in row] for row in verdicts], float)
        ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=-0.5, vmax=len(VERDICTS) - 0.5, aspect="auto")
        for (r, c), score in np.ndenumerate(scores):
            if score is not None and np.isfinite(score):
                ax.text(c, r, f"{score:.2f}", ha="center", va="center", fontsize=5.5,
                        fontweight="bold" if flipped[r, c] else "normal")
        ax.set_xticks(range(len(columns)), [_column_label(*c) for c in columns], rotation=90, fontsize=6)
        ax.set_yticks(range(len(methods)), [style.method_label(m) for m in methods] if ax is axes[0] else [],
                      fontsize=6.5)
        rows = table[table["metric"] == metric]
        rules = " / ".join(f"CI {side} {tau:g}" for side, tau in dict.fromkeys(zip(rows["criterion"], rows["tau"])))
        ax.set_title(f"{_metric_title(metric)}\npass: {rules}", fontsize=7)
        ax.tick_params(length=0)
    fig.legend(handles=[Patch(facecolor=VERDICT_COLOURS[v], edgecolor="0.6", label=v) for v in VERDICTS],
               loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    fig.suptitle(f"{model}: sanity-check verdicts by protocol setting and variant", fontsize=10)
    return fig, _facts(table)


def _facts(table: pd.DataFrame) -> str:
    seeds, images = int(table["n_seeds"].max()), int(table["n_images"].max())
    counts = table["verdict"].value_counts()
    reliability = table["reliability"].to_numpy(dtype=float)
    agreement = (f" Median agreement of the seeds (Krippendorff's alpha, images as units): "
                 f"{np.nanmedian(reliability):.2f}." if np.isfinite(reliability).any() else
                 " The seeds' agreement needs two seeds and two images or more; it is not given.")
    return (f"{images} test image(s) x {seeds} seed(s) per cell; score: the mean, with a bootstrap CI resampling "
            f"images and seeds (level as configured); tau per metric as in the panel titles. "
            f"Verdicts: {', '.join(f'{counts.get(v, 0)} {v}' for v in VERDICTS)}.{agreement}")


def verdict_flips(data: dict, model: str) -> tuple[Figure, str]:
    """Where a protocol setting flips the reference setting's verdict: per metric (panels), methods x the other
    settings of each variant, each cell the reference verdict -> this setting's."""
    table: pd.DataFrame = data["eval_protocols_csv"]
    others = table[(table["setting"] != table["reference"]) & table["reference_verdict"].notna()]
    if others.empty:  # only the reference setting was run: nothing can flip
        fig = Figure(figsize=(5.5, 1.5), layout="constrained")
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"{model}: the protocol matrix ran the reference setting only;\nno verdict can flip",
                ha="center", va="center", fontsize=9)
        return fig, "Only the reference setting was run (evaluations.protocols.settings)."
    methods = style.order_methods(table["method"].unique())
    metrics = _metrics(others)
    fig, axes = _panel_figure(others, methods, metrics)
    for ax, metric in zip(axes, metrics):
        columns, verdicts = _grid(others, metric, methods, "verdict")
        _, was = _grid(others, metric, methods, "reference_verdict")
        _, flipped = _grid(others, metric, methods, "flipped")
        _, reversed_ = _grid(others, metric, methods, "reversed")
        shown = np.array([[np.nan if f is None else 2.0 if r else 1.0 if f else 0.0 for f, r in zip(frow, rrow)]
                          for frow, rrow in zip(flipped, reversed_)])
        ax.imshow(np.ma.masked_invalid(shown), cmap=ListedColormap(["#f7f7f7", "#ef8a62", "#b2182b"]), vmin=0,
                  vmax=2, aspect="auto")
        for (r, c), flip in np.ndenumerate(flipped):
            if flip:
                ax.text(c, r, f"{was[r, c][0]}→{verdicts[r, c][0]}", ha="center", va="center", fontsize=5.5,
                        color="white")
        ax.set_xticks(range(len(columns)), [_column_label(*c) for c in columns], rotation=90, fontsize=6)
        ax.set_yticks(range(len(methods)), [style.method_label(m) for m in methods] if ax is axes[0] else [],
                      fontsize=6.5)
        ax.set_title(_metric_title(metric), fontsize=7)
        ax.tick_params(length=0)
    flips = others[others["flipped"]]
    fig.legend(handles=[Patch(facecolor="#ef8a62", label="to or from unclear"),
                        Patch(facecolor="#b2182b", label="reversed (pass ↔ fail)")],
               loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    fig.suptitle(f"{model}: where a protocol setting flips the reference verdict "
                 f"({len(flips)} of {len(others)} cells, {int(others['reversed'].sum())} reversed)", fontsize=10)
    named = flips.groupby("method")["setting"].agg(lambda s: ", ".join(dict.fromkeys(s)))
    facts = ("Cells: p = pass, u = unclear, f = fail, reference setting's verdict → this setting's. "
             + ("Flipped: " + "; ".join(f"{style.method_label(m)} by {s}" for m, s in named.items()) + "."
                if len(named) else "No setting flips a verdict."))
    return fig, facts


def activation_scale(data: dict, model: str) -> tuple[Figure, str]:
    """log10 of each block's activation RMS after full randomization over its RMS in the trained model, one line
    per protocol setting (mean over seeds; band: min to max), blocks from the input to the logits."""
    arrays = data["eval_protocols_maps"]
    require_arrays(arrays, ACTIVATION_ARRAYS, f"{model} protocols archive")
    blocks = arrays["activation_blocks"].tolist()[::-1]
    settings = arrays["activation_settings"].tolist()
    rms = arrays["activation_rms"].astype(float)[..., ::-1]  # (seeds, 1 + settings, blocks), input first
    ratio = np.log10(rms[:, 1:] / rms[:, :1])
    fig = Figure(figsize=(max(5.0, 1.5 + 0.35 * len(blocks)), 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(blocks))
    colours = style.categorical_colours(len(settings) - 1)
    for k, (setting, colour) in enumerate(zip(settings[1:], colours)):
        values = ratio[:, k]
        ax.plot(x, np.nanmean(values, axis=0), marker="o", markersize=3, color=colour, label=setting)
        if len(values) > 1:
            ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=colour, alpha=0.2,
                            linewidth=0)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xticks(x, blocks, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("log10(RMS randomized / RMS trained)")
    ax.set_xlabel("block (input → logits)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"{model}: activation scale after full randomization", fontsize=10)
    at_logits = np.nanmean(ratio, axis=0)[:, -1]
    facts = (f"RMS of each block's output over the test images, {len(rms)} seed(s). At the logits, by setting: "
             + ", ".join(f"{s} {10 ** w:.3g}x" for s, w in zip(settings[1:], at_logits)) + ".")
    return fig, facts
