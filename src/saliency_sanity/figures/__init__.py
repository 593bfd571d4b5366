"""The replication's figures: one builder per figure, all registered in :data:`FIGURES`.

``make_figure(name, model, inputs, out_dir, preset=...)`` renders one figure for one model as
PDF + PNG with a caption record; ``write_index(out_dir)`` lists them in ``index.md``.
"""

from saliency_sanity.figures.inputs import FigureInputError, MapSet, load_maps, load_similarity
from saliency_sanity.statistics import mean_ci
from saliency_sanity.figures.registry import (
    FIGURES,
    FigureSpec,
    UnknownFigureError,
    figure_records,
    figures_for,
    get_figure,
    git_commit,
    make_figure,
    register_figure,
    report_caption,
    write_index,
)

__all__ = [
    "FIGURES",
    "FigureInputError",
    "FigureSpec",
    "MapSet",
    "UnknownFigureError",
    "figure_records",
    "figures_for",
    "get_figure",
    "git_commit",
    "load_maps",
    "load_similarity",
    "make_figure",
    "mean_ci",
    "register_figure",
    "report_caption",
    "write_index",
]
