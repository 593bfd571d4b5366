"""Every figure, registered in one place with its file name, caption and inputs; and the index.

``make_figure`` renders one registered figure for one model to ``<out_dir>/<name>-<model>.pdf``
and ``.png`` (atomically) plus a sidecar record ``<out_dir>/.index/<name>-<model>.json`` (caption,
preset, git commit); ``write_index`` gathers the records into ``<out_dir>/index.md``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure

from saliency_sanity.contracts import figure_input_path, parse_figure_input
from saliency_sanity.figures import baseline_plots, evaluation_plots, plots, style, theory_plots, verdict_plots
from saliency_sanity.figures.inputs import (
    FigureInputError,
    load_evaluation,
    load_evaluation_maps,
    load_maps,
    load_similarity,
)
from saliency_sanity.registry import Registry, UnknownNameError
from saliency_sanity.runtime import atomic_write, write_json, write_text

INDEX_DIR = ".index"
FORMATS = ("pdf", "png")
# no creation date in the PDFs: the same results then give byte-identical figures (and manifest hashes)
SAVE_METADATA = {"pdf": {"CreationDate": None}}
# The PNGs are for viewing; the PDF keeps every map as computed. A big grid (20 x 18 maps of noise-like texture)
# is drawn at a lower dpi so that it has at most MAX_PNG_PIXELS (4177 x 4027 px at the style's 200 dpi), and
# one of more than PALETTE_PIXELS is stored with a 256-colour palette: its maps are near-random pixels that no
# PNG compresses, so it was 6.6 MB even at 2400 x 2400 and is 2.2 MB with the palette (greys and two diverging
# colour maps lose nothing visible).
MAX_PNG_PIXELS = 2400 * 2400
PALETTE_PIXELS = 2_000_000
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnknownFigureError(UnknownNameError):
    """Raised for a figure name that is not registered."""


@dataclass(frozen=True)
class FigureSpec:
    """A registered figure: its builder, caption (``{model}`` is filled in) and input keys.

    Input keys follow :func:`saliency_sanity.contracts.figure_input_path`: ``<mode>_csv`` /
    ``<mode>_maps`` for a randomization test of the model, ``theory_<name>_csv`` /
    ``theory_<name>_maps`` for a theory check, ``eval_<name>_csv`` for an evaluation of the model. ``model`` is set for a figure about one fixed model (the
    theory figures); None means one figure per model of the config.
    """

    name: str
    build: Callable[..., tuple[Figure, str]]
    caption: str
    inputs: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None

    def input_paths(self, model: str, results_dir: str | Path = "results") -> dict[str, Path]:
        """Where the workflow writes each input of this figure for ``model``."""
        return {key: figure_input_path(key, model, results_dir) for key in self.inputs}

    @property
    def modes(self) -> set[str]:
        """The randomization modes whose results this figure reads."""
        return self._names("randomization")

    @property
    def evaluations(self) -> set[str]:
        """The evaluations whose results this figure reads."""
        return self._names("evaluation")

    def _names(self, source: str) -> set[str]:
        parsed = (parse_figure_input(key) for key in self.inputs)
        return {name for kind, name, _ in parsed if kind == source}


FIGURES: Registry[FigureSpec] = Registry("figure", UnknownFigureError)


def register_figure(spec: FigureSpec) -> FigureSpec:
    """Register a figure; every model whose runs produce its inputs gets it in the next workflow run."""
    return FIGURES.add(spec.name, spec)


def figures_for(modes: Iterable[str], evaluations: Iterable[str] = ()) -> list[str]:
    """The per-model figures (``model`` None) whose inputs the randomization ``modes`` and the ``evaluations``
    of a model produce (a figure reads at least one of them)."""
    modes, evaluations = set(modes), set(evaluations)
    return [name for name, spec in FIGURES.items() if spec.model is None and (spec.modes or spec.evaluations)
            and spec.modes <= modes and spec.evaluations <= evaluations]


_SIMILARITY = (
    "Similarity between each method's maps for the original {model} and its maps {after}, by four "
    "metrics: Spearman rank correlation of absolute and of signed maps, SSIM and HOG similarity "
    "(stage original: the model before any re-initialization)."
)

for _spec in (
        FigureSpec(
            "methods_vs_edges",
            plots.methods_vs_edges,
            "Saliency maps of the original {model} for a few test images, next to model-free controls "
            "(edge detectors, random noise; right, grey titles): do the methods explain the model or "
            "the input?",
            ("cascading_maps",),
        ),
        FigureSpec(
            "cascading_grid",
            plots.cascading_grid,
            "Cascading randomization of {model}: one test image's maps (rows: methods, model-free "
            "controls last) for the unrandomized model (original) and after re-initializing the blocks from "
            "the logits down to the block named in each column.",
            ("cascading_maps",),
        ),
        FigureSpec(
            "cascading_grid_signed",
            plots.cascading_grid,
            "Cascading randomization of {model} as in cascading_grid, with signed maps: the sign "
            "shows where a method's map keeps the input's structure but not its evidence.",
            ("cascading_maps",),
            {"signed": True},
        ),
        FigureSpec(
            "similarity_cascading",
            plots.similarity_curves,
            _SIMILARITY.format(model="{model}", after="after cascading randomization down to each block"),
            ("cascading_csv", "cascading_maps"),
            {"mode": "cascading"},
        ),
        FigureSpec(
            "similarity_independent",
            plots.similarity_curves,
            _SIMILARITY.format(model="{model}", after="after randomizing each block alone (independent randomization)"),
            ("independent_csv", "independent_maps"),
            {"mode": "independent"},
        ),
        FigureSpec(
            "label_randomization",
            plots.label_randomization,
            "Data randomization test for {model}: maps of the model trained on the true labels and of "
            "the same architecture trained on randomly permuted labels (top), and the similarity of the "
            "two models' maps per method and metric (bottom).",
            ("labels_maps", "labels_csv"),
        ),
        FigureSpec(
            "baselines_gallery",
            baseline_plots.baseline_gallery,
            "Baselines of {model}: for a few test images, each baseline x' of Integrated Gradients (its first draw, "
            "in the input's colours) next to the map from it, for the original (unrandomized) model.",
            ("cascading_maps",),
            {"method": "integrated_gradients"},
        ),
        FigureSpec(
            "baselines_cascading_grid",
            baseline_plots.baseline_cascading_grid,
            "Cascading randomization of {model}, Integrated Gradients with each baseline (rows): one test image's "
            "maps for the unrandomized model (original) and after re-initializing the blocks from the logits down to "
            "the block named in each column.",
            ("cascading_maps",),
            {"method": "integrated_gradients"},
        ),
        FigureSpec(
            "baselines_cascading",
            baseline_plots.baseline_curves,
            "Cascading randomization of {model} per baseline: the similarity of each path method's maps after "
            "re-initializing the blocks from the logits down to each block to its maps of the unrandomized model, one "
            "column per baseline, one row per metric. Does a baseline change the verdict of the sanity check?",
            ("cascading_csv", "cascading_maps"),
            {"mode": "cascading"},
        ),
        FigureSpec(
            "baselines_labels",
            baseline_plots.baseline_label_bars,
            "Data randomization test of {model} per baseline: the similarity of each path method's maps for the "
            "model trained on the true labels and for the one trained on permuted labels, per metric, one bar per "
            "baseline.",
            ("labels_csv",),
        ),
        FigureSpec(
            "ig_convergence",
            evaluation_plots.ig_convergence,
            "Convergence of Integrated Gradients on {model}: the completeness error |sum of the map - (f(x) - "
            "f(x'))| / |f(x) - f(x')| against the gradient passes per image, for each quadrature rule of the "
            "straight path and for adaptive IG, which refines each image's path until its error is under a "
            "tolerance (one panel per baseline).",
            ("eval_convergence_csv",),
        ),
        FigureSpec(
            "path_outputs",
            evaluation_plots.path_outputs,
            "Saturation along the path on {model}: the target logit at x' + alpha (x - x') from each baseline "
            "x' (alpha = 0) to the image (alpha = 1). Where it is flat, the path's gradients carry little of "
            "the attribution.",
            ("eval_path_outputs_csv",),
        ),
        FigureSpec(
            "ablation_methods",
            evaluation_plots.ablation_methods,
            "Ablation tests on {model}: the true-class logit, as a fraction of the original, after replacing "
            "the top fraction k of pixels ranked by each method's map (top-k) or a box of area k around the "
            "map's centre of mass (mass-center), by the image's mean colour or a blurred copy; a random map "
            "is the control.",
            ("eval_ablation_csv",),
        ),
        FigureSpec(
            "ablation_baselines",
            evaluation_plots.ablation_baselines,
            "Ablation tests on {model} for Integrated Gradients with each baseline: the true-class logit, as a "
            "fraction of the original, after replacing the top fraction k of pixels by the map (top-k) or a "
            "box of area k around its centre of mass (mass-center), by the mean colour or a blurred copy; a "
            "random map is the control.",
            ("eval_ablation_csv",),
            {"method": "integrated_gradients"},
        ),
        FigureSpec(
            "shortcut",
            evaluation_plots.shortcut,
            "Planted shortcut, {model}: test accuracy when the planted code gives the true class (as in "
            "training), a random class, or nothing (left), and the share of each map's absolute mass on the "
            "code's pixels for the predicted class, path methods per baseline (right; dashed: the share of "
            "pixels the code covers, what a map blind to it puts there).",
            ("eval_shortcut_csv",),
        ),
        FigureSpec(
            "shortcut_maps",
            evaluation_plots.shortcut_maps,
            "Planted shortcut, {model}: the maps of test images that carry the code of their class (its pixels "
            "outlined in red), by every method and every path method per baseline, for the predicted class; the "
            "corner gives each map's share of absolute mass on the code. Which maps reveal what the model uses?",
            ("eval_shortcut_maps",),
        ),
        FigureSpec(
            "class_conversion",
            evaluation_plots.class_conversion,
            "Class conversion on {model} (DeepLIFT, Shrikumar et al. 2017, Fig. 5): for images of class c0, the "
            "drop in the log-odds logit c0 − logit ct after erasing the pixels each method ranks highest by its "
            "map for c0 minus its map for ct. The larger the drop, the better the maps found what tells the two "
            "classes apart.",
            ("eval_class_conversion_csv",),
        ),
        FigureSpec(
            "class_conversion_maps",
            evaluation_plots.class_conversion_maps,
            "Class conversion on {model}: one image per task (rows) and each method's map for the source class "
            "minus its map for the target class (red: evidence for the source, blue: for the target), with the "
            "erased pixels outlined.",
            ("eval_class_conversion_maps",),
        ),
        FigureSpec(
            "verdict_matrix",
            verdict_plots.verdict_matrix,
            "Which sanity-check verdicts survive a change of protocol, for {model}: each method (rows) under each "
            "variant of the test and protocol setting (columns; mprt: similarity after every block is re-initialized; "
            "smprt: the same with maps averaged over noisy copies of the input; random_logit: the map for a random "
            "other class; emprt: the rise of the map's entropy), per metric (panels). Cells: the mean score over "
            "images and seeds, green where its confidence interval lies on the passing side of tau, red where it "
            "lies on the other, grey where it contains tau; bold where the setting flips the reference setting's "
            "verdict. The model-free controls (edge detectors, random noise) are the null maps.",
            ("eval_protocols_csv",),
        ),
        FigureSpec(
            "verdict_flips",
            verdict_plots.verdict_flips,
            "Where a protocol setting flips a sanity-check verdict of {model}: for each variant, every setting "
            "other than the reference, per metric (panels); a coloured cell is a method whose verdict differs from "
            "the one the reference setting gives (reference → this setting): dark red where it reverses (pass ↔ "
            "fail), light where it moves to or from unclear.",
            ("eval_protocols_csv",),
        ),
        FigureSpec(
            "activation_scale",
            verdict_plots.activation_scale,
            "What re-initialization does to the scale of {model}'s activations (Binder et al. 2023): for each "
            "block, the root mean square of its output over the test images after every block is re-initialized, "
            "over the same in the unrandomized model (log10), one line per protocol setting. A change of scale alone "
            "can change a gradient map without changing what the model computes in any useful sense.",
            ("eval_protocols_maps",),
        ),
        FigureSpec(
            "convsum_maps",
            theory_plots.convsum_maps,
            "Theory check, the 1-D convolution + ReLU + sum-pooling model ({model}): a synthetic signal, "
            "the maps of each method for random filters and for the same filters trained on the bump "
            "task, and a model-free edge detector (paper Fig. 27 analogue).",
            ("theory_convsum_maps",),
            model="signals-convsum",
        ),
        FigureSpec(
            "convsum_filters",
            theory_plots.convsum_filters,
            "Theory check, the 1-D convolution + ReLU + sum-pooling model ({model}): Spearman rank "
            "correlation of each method's map with the input, with the closed-form many-random-filters "
            "limit, with an edge detector and, for trained filters, with the random filters' map, against "
            "the number of filters J, for random and for trained filters.",
            ("theory_convsum_filters_csv",),
            model="signals-convsum",
        ),
        FigureSpec(
            "linear_model",
            theory_plots.linear_model,
            "Theory check, the linear model ({model}): gradient, gradient x input and Integrated "
            "Gradients maps for trained and for random weights w (top), the Spearman rank correlation of "
            "each map with the input, and of the trained model's maps with the random model's (bottom).",
            ("theory_linear_maps", "theory_linear_csv"),
            model="mnist-linear",
        ),
):
    register_figure(_spec)


def get_figure(name: str) -> FigureSpec:
    """Look a figure up by name, with an error that lists the registered ones."""
    return FIGURES.get_entry(name)


def caption(spec: FigureSpec, model: str, facts: str, preset: str, notes: str = "") -> str:
    """The full caption: what the figure shows, what the data were, and the preset used."""
    settings = f"Made with the {preset} preset" + (f": {notes.strip().rstrip('.')}." if notes.strip() else ".")
    return " ".join(part for part in (spec.caption.format(model=model), facts, settings) if part)


def report_caption(name: str, model: str) -> str:
    """The caption ``snakemake --report`` shows for figure ``name`` of ``model`` (workflow/report/figure.rst
    renders it from the figure job's params): the registered caption, its reStructuredText markup escaped."""
    return re.sub(r"([\\|*`_])", r"\\\1", get_figure(name).caption.format(model=model))


def make_figure(
    name: str, model: str, inputs: Mapping[str, Path], out_dir: Path, *, preset: str, notes: str = ""
) -> list[Path]:
    """Render figure ``name`` for ``model``; returns the PDF, the PNG and the sidecar record written."""
    spec = get_figure(name)
    if not MODEL_NAME.match(model):
        raise ValueError(f"model name {model!r} cannot be used in a file name; use letters, digits, '.', '_', '-'")
    if spec.model is not None and model != spec.model:
        raise ValueError(f"figure {name!r} is about the model {spec.model!r} only, not {model!r}")
    data = _load_inputs(spec, model, inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{model}"
    with matplotlib.rc_context(style.RC):
        fig, facts = spec.build(data, model, **spec.options)
        paths = [out_dir / f"{stem}.{fmt}" for fmt in FORMATS]
        for path, fmt in zip(paths, FORMATS):
            atomic_write(path, lambda tmp, fmt=fmt: save_figure(fig, tmp, fmt))
    record = {
        "name": name,
        "model": model,
        "files": [p.name for p in paths],
        "caption": caption(spec, model, facts, preset, notes),
        "preset": preset,
        "notes": notes,
        "inputs": {key: str(path) for key, path in sorted(inputs.items()) if key in spec.inputs},
        "commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    sidecar = out_dir / INDEX_DIR / f"{stem}.json"
    write_json(sidecar, record)
    return paths + [sidecar]


def _load_inputs(spec: FigureSpec, model: str, inputs: Mapping[str, Path]) -> dict[str, Any]:
    missing = [key for key in spec.inputs if key not in inputs]
    if missing:
        expected = ", ".join(f"{k}={p}" for k, p in spec.input_paths(model).items())
        raise FigureInputError(f"figure {spec.name!r} needs input(s) {missing}; pass e.g. {expected}")
    data = {}
    for key in spec.inputs:
        path = Path(inputs[key])
        if not path.is_file():
            raise FileNotFoundError(
                f"figure {spec.name!r}: input {key} = {path} does not exist; run the step that writes "
                f"it (snakemake {path})"
            )
        source, input_name, kind = parse_figure_input(key)
        if source == "theory":
            data[key] = theory_plots.load_theory_input(path)
        elif source == "evaluation":
            data[key] = load_evaluation(path, input_name) if kind == "csv" else load_evaluation_maps(path, input_name)
        else:
            data[key] = load_maps(path) if key.endswith("_maps") else load_similarity(path)
    return data


def git_commit(repo_dir: Path | None = None) -> str:
    """Short commit of the code, '-dirty' if tracked files have uncommitted changes; else 'unknown'."""
    cwd = repo_dir or Path(__file__).resolve().parent
    try:
        commit = _git(cwd, "rev-parse", "--short", "HEAD")
        dirty = _git(cwd, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=True)
    return done.stdout.strip()


def save_figure(fig, path: Path, fmt: str) -> None:
    """``fig`` as ``fmt`` at ``path``: PDFs undated, PNGs within the pixel budget, big ones with a palette."""
    if fmt != "png":
        fig.savefig(path, format=fmt, metadata=SAVE_METADATA.get(fmt))
        return
    dpi = matplotlib.rcParams["savefig.dpi"]
    width, height = fig.get_size_inches()
    dpi = min(fig.dpi if dpi == "figure" else dpi, (MAX_PNG_PIXELS / (width * height)) ** 0.5)
    if width * height * dpi ** 2 <= PALETTE_PIXELS:
        fig.savefig(path, format="png", dpi=dpi)
        return
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(buffer).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, format="png",
                                                                                       optimize=True)


def figure_records(out_dir: Path) -> list[dict[str, Any]]:
    """The sidecar records of the figures in ``out_dir`` whose files all exist, in registry order, then by model."""
    records = []
    for sidecar in sorted((Path(out_dir) / INDEX_DIR).glob("*.json")):
        record = json.loads(sidecar.read_text())
        if all((Path(out_dir) / f).is_file() for f in record["files"]):
            records.append(record)
    order = list(FIGURES)
    records.sort(key=lambda r: (order.index(r["name"]) if r["name"] in order else len(order), r["name"], r["model"]))
    return records


def write_index(out_dir: Path, left_out: Sequence[str] = ()) -> Path:
    """Gather the sidecar records into ``<out_dir>/index.md``, in registry order, then by model.

    Records whose figure files no longer exist are left out (:func:`figure_records`), so the index lists what is there.
    ``left_out``: one line per model the run went without, and why (said before the figures).
    """
    out_dir = Path(out_dir)
    records = figure_records(out_dir)
    lines = ["# Figures", "", "Written by `saliency-sanity index` from the records in `.index/`.", ""]
    if left_out:
        lines += ["## Left out of this run", "", *(f"- {line}" for line in left_out), ""]
    for r in records:
        links = ", ".join(f"[{f}]({f})" for f in r["files"])
        png = next((f for f in r["files"] if f.endswith(".png")), None)
        lines += [f"## {r['name']}-{r['model']}", ""]
        lines += [f"![{r['name']}-{r['model']}]({png})", ""] if png else []
        lines += [r["caption"], "", f"- files: {links}", f"- preset: {r['preset']}", f"- commit: {r['commit']}", ""]
    index = out_dir / "index.md"
    write_text(index, "\n".join(lines))
    return index
