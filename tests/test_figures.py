"""Figures: every registered figure renders from synthetic runner outputs; records and index.

The synthetic inputs follow the runner's file contracts (DESIGN.md, and the maps archive of
``experiments._write_maps``): 3 images, 4 methods (one a model-free control), original + 3
randomization stages; normalized, channel-reduced float16 maps, every stage kept for the first
GRID_IMAGES images.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from saliency_sanity.figures import (
    FIGURES,
    FigureInputError,
    UnknownFigureError,
    git_commit,
    load_maps,
    make_figure,
    report_caption,
    write_index,
)
from saliency_sanity.figures import plots, style
from saliency_sanity.figures.registry import MAX_PNG_PIXELS, PALETTE_PIXELS, save_figure
from saliency_sanity.methods import METHODS, Method
from saliency_sanity.similarity import normalize_absolute, normalize_signed

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mnist-cnn"
METHOD_NAMES = ["guided_backprop", "gradient", "test_edge_control", "integrated_gradients"]
# the series as the runner writes them: every method with its configured baseline, then IG with two more
SERIES = [("guided_backprop", "none"), ("gradient", "none"), ("test_edge_control", "none"),
          ("integrated_gradients", "zero"), ("integrated_gradients", "blurred(sigma=4)"), ("integrated_gradients", "uniform")]
BASELINES = ["zero", "blurred(sigma=4)", "uniform"]
STAGES = {
    "cascading": ["original", "logits", "fc", "conv2"],
    "independent": ["original", "logits", "fc", "conv2"],
    "labels": ["original", "random_labels"],
}
METRICS = ["spearman_abs", "spearman_signed", "ssim", "hog"]
N_IMAGES, SIZE = 3, 28
GRID_IMAGES = 2  # images whose maps are kept at every stage (randomization.grid_images)
# Figures made for each model from the randomization outputs; the theory figures (one fixed model
# each, FigureSpec.model) are tested in test_theory.py, the evaluations' in test_evaluation.py.
PER_MODEL = [name for name, spec in FIGURES.items() if spec.model is None and not spec.evaluations]


@pytest.fixture(scope="module", autouse=True)
def control_method():
    """Register a model-free control for this module only (restored afterwards); module-scoped so that
    the module-scoped figures below are rendered with it registered."""
    with METHODS.added("test_edge_control", Method("test_edge_control", lambda m, x, t: x, model_free=True)):
        yield


def _images(rng: np.random.Generator) -> np.ndarray:
    """Digit-like images: a bright ring on a black background."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = []
    for k in range(N_IMAGES):
        r = np.hypot(yy - 14, xx - 14 + k)
        images.append(np.exp(-((r - 7 + k) ** 2) / 4) + 0.05 * rng.random((SIZE, SIZE)))
    return np.clip(np.stack(images)[:, None], 0, 1).astype(np.float32)


def _write_maps(path: Path, mode: str, rng: np.random.Generator, normalization: str = "max") -> None:
    """An archive as the runner writes it: raw maps normalized and summed over channels, float16."""
    images = _images(rng)
    stages = STAGES[mode]
    shape = (len(SERIES), len(stages), N_IMAGES, SIZE, SIZE)
    absolute, signed = np.empty(shape, np.float16), np.empty(shape, np.float16)
    for m, (method, _) in enumerate(SERIES):
        for s in range(len(stages)):
            keep = 1.0 if method in ("test_edge_control", "guided_backprop") else 1.0 / (1 + 2 * s)
            raw = keep * images * np.sign(rng.standard_normal(images.shape)) + (1 - keep) * rng.standard_normal(images.shape)
            absolute[m, s] = normalize_absolute(raw, normalization)
            signed[m, s] = normalize_signed(raw, normalization)
    predictions = rng.integers(0, 10, (len(stages), N_IMAGES))
    np.savez(path, images=images, labels=np.array([3, 1, 4]), methods=np.array([m for m, _ in SERIES]),
             baselines=np.array([b for _, b in SERIES]), baseline_labels=np.array(BASELINES),
             baseline_display=rng.random((len(BASELINES), GRID_IMAGES, 1, SIZE, SIZE)).astype(np.float16),
             stages=np.array(stages), original_abs=absolute[:, 0], original_signed=signed[:, 0],
             maps_abs=absolute[:, :, :GRID_IMAGES], maps_signed=signed[:, :, :GRID_IMAGES],
             normalization=np.array(normalization), targets=predictions, predictions=predictions,
             dataset=np.array("mnist"), model=np.array("cnn"), mode=np.array(mode),
             completeness=_completeness(len(stages)))


COMPLETENESS_AT_STAGE_0 = [0.01, 0.03, 0.2]  # median 3 %, max 20 %, 2 of 3 within 5 %


def _completeness(n_stages: int) -> np.ndarray:
    """Integrated Gradients' recorded completeness errors; NaN for the methods without the property."""
    errors = np.full((len(SERIES), n_stages, N_IMAGES), np.nan)
    for index, (method, baseline) in enumerate(SERIES):  # the other baselines' errors differ: captions give IG's own
        if method == "integrated_gradients":
            later = 1.0 if baseline == "zero" else 9.0
            errors[index] = [COMPLETENESS_AT_STAGE_0] + [[later] * N_IMAGES] * (n_stages - 1)
    return errors


def _write_csv(path: Path, mode: str, rng: np.random.Generator) -> None:
    rows = []
    for s, stage in enumerate(STAGES[mode]):
        for method, baseline in SERIES:
            for metric in METRICS:
                for image in range(N_IMAGES):
                    value = 1.0 if s == 0 else 0.8 / (1 + s) + 0.1 * rng.standard_normal()
                    rows.append(dict(dataset="mnist", model="cnn", mode=mode, stage=stage, stage_index=s,
                                     method=method, baseline=baseline, metric=metric, image=image, value=value))
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    paths = {}
    for mode in STAGES:
        paths[f"{mode}_csv"] = root / f"{MODEL}-{mode}.csv"
        paths[f"{mode}_maps"] = root / f"{MODEL}-{mode}.npz"
        _write_csv(paths[f"{mode}_csv"], mode, rng)
        _write_maps(paths[f"{mode}_maps"], mode, rng)
    return paths


@pytest.fixture(scope="module")
def made(inputs, tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """Every registered figure rendered once for MODEL (and one for a second model)."""
    out = tmp_path_factory.mktemp("figures")
    paths = {name: make_figure(name, MODEL, inputs, out, preset="smoke", notes="3 images, 1 epoch") for name in PER_MODEL}
    make_figure("cascading_grid", "fashion-mnist-cnn", inputs, out, preset="paper")
    return out, paths


@pytest.mark.parametrize("name", PER_MODEL)
def test_every_figure_writes_pdf_png_and_record(name, made):
    out, paths = made
    pdf, png, sidecar = paths[name]
    assert (pdf.name, png.name) == (f"{name}-{MODEL}.pdf", f"{name}-{MODEL}.png")
    assert pdf.parent == png.parent == out and sidecar == out / ".index" / f"{name}-{MODEL}.json"
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    pixels = imread(png)
    assert 250 <= min(pixels.shape[:2]) and pixels.shape[0] * pixels.shape[1] <= MAX_PNG_PIXELS * 1.01, pixels.shape
    assert pixels[..., :3].std() > 0.01  # something was drawn
    record = json.loads(sidecar.read_text())
    assert record["name"] == name and record["files"] == [pdf.name, png.name]
    assert record["preset"] == "smoke" and record["commit"] == git_commit()
    assert MODEL in record["caption"] and record["caption"].endswith("Made with the smoke preset: 3 images, 1 epoch.")
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_the_same_results_draw_byte_identical_figures(inputs, tmp_path, monkeypatch):
    """No creation date or other run-dependent bytes in the PDF or PNG: a rerun a year later (matplotlib
    dates a PDF from SOURCE_DATE_EPOCH when set) changes no manifest hash."""
    drawn = []
    for run, epoch in (("first", "1700000000"), ("later", "1731536000")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        drawn.append(make_figure("cascading_grid", MODEL, inputs, tmp_path / run, preset="smoke")[:2])
    for first, second in zip(*drawn):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_a_big_grid_png_is_kept_viewable_and_small_and_a_plot_keeps_its_colours(tmp_path):
    """A 20 x 20 inch panel of noise (an ImageNet grid's texture) within the pixel budget and with a palette."""
    from matplotlib.figure import Figure
    from PIL import Image

    noise = np.random.default_rng(0).random((600, 600))
    big, small = Figure(figsize=(20, 20)), Figure(figsize=(4, 3))
    big.add_subplot().imshow(noise, cmap="gray")
    small.add_subplot().plot([0, 1], [1, 0], color="tab:red")
    save_figure(big, tmp_path / "big.png", "png")
    save_figure(small, tmp_path / "small.png", "png")
    with Image.open(tmp_path / "big.png") as image:
        assert image.mode == "P" and PALETTE_PIXELS < image.width * image.height <= MAX_PNG_PIXELS * 1.01
    with Image.open(tmp_path / "small.png") as image:
        assert image.mode == "RGBA"
    assert (tmp_path / "big.png").stat().st_size < 0.5 * 4 * MAX_PNG_PIXELS  # far below raw RGBA


def test_pdf_embeds_truetype_fonts(made):
    data = made[1]["similarity_cascading"][0].read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # pdf.fonttype 42: embedded TrueType


def test_caption_reads_facts_off_the_data(made, inputs):
    def text(name):
        return json.loads(made[1][name][2].read_text())["caption"]

    assert f"Mean over {N_IMAGES} test images" in text("similarity_independent")
    assert "Test image 0 (label 3)" in text("cascading_grid")
    assert "predicted class" in text("cascading_grid")  # the runner's targets equal its predictions
    archive = np.load(inputs["cascading_maps"])
    correct = int((archive["predictions"][0] == archive["labels"]).sum())
    for name in ("methods_vs_edges", "cascading_grid", "similarity_cascading"):
        assert f"predicts the label of {correct} of {N_IMAGES} images" in text(name), name
        assert ("Integrated Gradients median 3 %, max 20 % (2 of 3 maps within 5 %) for the original model, "
                "median 100 % over all stages") in text(name), name


def test_index_lists_every_figure_made_with_caption_preset_commit(made, tmp_path):
    shutil.copytree(made[0], tmp_path, dirs_exist_ok=True)
    (tmp_path / f"methods_vs_edges-{MODEL}.png").unlink()  # stale record: its figure is gone
    text = write_index(tmp_path).read_text()
    listed = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    expected = [f"{name}-{MODEL}" for name in PER_MODEL if name != "methods_vs_edges"]
    expected.insert(expected.index(f"cascading_grid-{MODEL}"), "cascading_grid-fashion-mnist-cnn")
    assert listed == expected  # registry order, then model; only figures that exist
    assert "[similarity_cascading-mnist-cnn.pdf](similarity_cascading-mnist-cnn.pdf)" in text
    assert "- preset: paper" in text and "- preset: smoke" in text and f"- commit: {git_commit()}" in text
    assert "Cascading randomization of fashion-mnist-cnn" in text
    assert write_index(tmp_path).read_text() == text  # deterministic


def test_unknown_figure_lists_the_known_ones(inputs, tmp_path):
    with pytest.raises(UnknownFigureError, match="unknown figure .fig9.; registered: .*cascading_grid"):
        make_figure("fig9", MODEL, inputs, tmp_path, preset="smoke")


def test_missing_input_file_is_named(inputs, tmp_path):
    broken = dict(inputs, cascading_csv=tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="cascading_csv = .*nowhere.csv"):
        make_figure("similarity_cascading", MODEL, broken, tmp_path, preset="smoke")
    with pytest.raises(FigureInputError, match=r"\['labels_csv'\].*results/randomization/mnist-cnn-labels.csv"):
        make_figure("label_randomization", MODEL, {"labels_maps": inputs["labels_maps"]}, tmp_path, preset="smoke")


def test_malformed_inputs_are_rejected(inputs, tmp_path):
    csv = tmp_path / "bad.csv"
    pd.read_csv(inputs["cascading_csv"]).drop(columns="metric").to_csv(csv, index=False)
    with pytest.raises(FigureInputError, match="missing column.*metric"):
        make_figure("similarity_cascading", MODEL, {"cascading_csv": csv, "cascading_maps": inputs["cascading_maps"]},
                    tmp_path, preset="smoke")
    npz = tmp_path / "bad.npz"
    arrays = dict(np.load(inputs["cascading_maps"]))
    np.savez(npz, **dict(arrays, maps_signed=arrays["maps_signed"][:, :2]))
    with pytest.raises(FigureInputError, match=r"bad.npz: maps_signed has shape \(6, 2, 2, 28, 28\), expected "
                                               r"\(methods, stages, grid_images, H, W\) = \(6, 4, 2, 28, 28\)"):
        load_maps(npz)


@pytest.mark.parametrize("name, bad, message", [
    ("original_abs", lambda a: a[:, :2], r"original_abs has shape \(6, 2, 28, 28\), expected \(methods, images, H, W\)"),
    ("original_signed", lambda a: a[..., :27], r"original_signed has shape .*expected .* = \(6, 3, 28, 28\)"),
    ("maps_abs", lambda a: a[:, :, :, :, :5], r"maps_abs has shape \(6, 4, 2, 28, 5\)"),
    ("maps_abs", lambda a: a[:, :, :0], r"maps_abs has shape \(6, 4, 0, 28, 28\).*1 <= G <= 3"),
    ("maps_abs", lambda a: a.astype(np.int8), r"maps_abs has dtype int8"),
    ("display", lambda a: np.zeros((3, 1, 14, 14), np.float32), r"display has shape \(3, 1, 14, 14\), expected "
                                                                 r"\(images, C, H, W\) = \(3, 1, 28, 28\)"),
    ("normalization", lambda a: np.array("l2"), r"normalization is 'l2'"),
    ("baselines", lambda a: a[:5], r"baselines has 5 entries for 6 methods"),
    ("baselines", lambda a: np.array(["none"] * 6), r"a \(method, baseline\) series twice"),
    ("baseline_display", lambda a: a[:, :1], r"baseline_display has shape \(3, 1, 1, 28, 28\), expected "
                                             r"\(baselines, grid_images, C, H, W\) = \(3, 2, 1, 28, 28\)"),
])
def test_malformed_maps_archive_names_the_array(inputs, tmp_path, name, bad, message):
    arrays = dict(np.load(inputs["cascading_maps"]))
    npz = tmp_path / "bad.npz"
    np.savez(npz, **dict(arrays, **{name: bad(arrays.get(name))}))
    with pytest.raises(FigureInputError, match=message):
        load_maps(npz)


def test_missing_arrays_and_old_raw_maps_archive_are_named(inputs, tmp_path):
    arrays = dict(np.load(inputs["cascading_maps"]))
    npz = tmp_path / "old.npz"
    old = {k: v for k, v in arrays.items() if k not in ("original_abs", "original_signed", "maps_abs", "maps_signed")}
    np.savez(npz, **old, maps=np.zeros((4, 4, 3, 1, 28, 28), np.float32))
    with pytest.raises(FigureInputError, match=r"old.npz: missing array\(s\) \['original_abs', 'original_signed', "
                                               r"'maps_abs', 'maps_signed'\].*older runner"):
        load_maps(npz)


def test_cascading_grid_needs_an_image_kept_at_every_stage(inputs):
    data = {"cascading_maps": load_maps(inputs["cascading_maps"])}
    assert data["cascading_maps"].grid_images == GRID_IMAGES and data["cascading_maps"].n_images == N_IMAGES
    plots.cascading_grid(data, MODEL, image=GRID_IMAGES - 1)
    with pytest.raises(FigureInputError, match=r"first 2 image\(s\) only, not image 2; raise the config key "
                                               r"randomization.grid_images"):
        plots.cascading_grid(data, MODEL, image=GRID_IMAGES)
    with pytest.raises(FigureInputError, match="no image 3; it has 3"):
        plots.cascading_grid(data, MODEL, image=N_IMAGES)
    fig, _ = plots.methods_vs_edges(data, MODEL, n_images=N_IMAGES)  # stage 0 of every image, grid or not
    assert len(fig.axes) > 3 * len(METHOD_NAMES)


def test_figures_show_the_archives_maps_display_and_normalization(inputs, tmp_path):
    arrays = dict(np.load(inputs["cascading_maps"]))
    display = np.random.default_rng(3).random((N_IMAGES, 1, SIZE, SIZE)).astype(np.float32)
    npz = tmp_path / "display.npz"
    np.savez(npz, **arrays, display=display)
    m = load_maps(npz)
    np.testing.assert_array_equal(m.input_image(1), display[1])  # display, not images, is the input shown
    np.testing.assert_array_equal(m.original("gradient", 2, signed=True),
                                  arrays["original_signed"][METHOD_NAMES.index("gradient"), 2])
    np.testing.assert_array_equal(m.map("gradient", 3, 1), arrays["maps_abs"][METHOD_NAMES.index("gradient"), 3, 1])
    fig, facts = plots.cascading_grid({"cascading_maps": m}, MODEL, image=1)
    first_input = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(first_input, display[1, 0])
    assert "divided per panel by their maximum" in facts
    assert load_maps(inputs["cascading_maps"]).display is None
    np.testing.assert_array_equal(load_maps(inputs["cascading_maps"]).input_image(1), arrays["images"][1])
    _write_maps(npz, "cascading", np.random.default_rng(4), normalization="percentile")
    for signed, text in ((False, "divided per panel by their 99th percentile and clipped to [0, 1]"),
                         (True, "99th percentile of their magnitude and clipped to [-1, 1]")):
        _, facts = plots.cascading_grid({"cascading_maps": load_maps(npz)}, MODEL, signed=signed)
        assert text in facts


def test_the_report_shows_each_figures_registered_caption_with_its_markup_escaped():
    """workflow/report/figure.rst renders the figure job's caption param: the registered caption (one source of
    text), the model filled in, reStructuredText's markup characters escaped (|x| would be a substitution)."""
    assert "{{ snakemake.params.caption }}" in (ROOT / "workflow" / "report" / "figure.rst").read_text()
    for name in FIGURES:
        caption = report_caption(name, "mnist-cnn")
        assert caption.replace("\\", "") == FIGURES[name].caption.format(model="mnist-cnn"), name
        assert not re.search(r"(?<!\\)[|*`]", caption), name
    assert "\\|" in report_caption("ig_convergence", "mnist-cnn")


def test_input_paths_follow_the_file_contract():
    paths = FIGURES["label_randomization"].input_paths("mnist-mlp")
    assert paths == {"labels_maps": Path("results/maps/mnist-mlp-labels.npz"),
                     "labels_csv": Path("results/randomization/mnist-mlp-labels.csv")}


def test_method_order_and_colours_are_keyed_by_name():
    ordered = style.order_methods(["test_edge_control", "vargrad", "zz_unregistered", "gradient"])
    assert ordered == ["gradient", "vargrad", "zz_unregistered", "test_edge_control"]
    assert style.is_control("test_edge_control") and not style.is_control("zz_unregistered")
    colours = {m: style.method_colour(m) for m in style.CANONICAL_ORDER + style.CONTROL_ORDER}
    assert len(set(colours.values())) == len(colours)
    assert style.method_colour("zz_unregistered") == style.method_colour("zz_unregistered")


def test_every_built_in_method_has_its_familys_marker_and_curves_draw_it(inputs):
    """15+ curves in one panel differ in shape by family, not only in colour."""
    families = style.FAMILY_MARKERS
    assert sorted(m for methods in families.values() for m in methods) == sorted(style.CANONICAL_ORDER)
    assert len(families) == len(set(families))
    spec = FIGURES["similarity_cascading"]
    fig, _ = spec.build({"cascading_csv": pd.read_csv(inputs["cascading_csv"])}, MODEL, **spec.options)
    drawn = {line.get_color(): line.get_marker() for ax in fig.axes for line in ax.get_lines() if line.get_marker()}
    for method in ("gradient", "guided_backprop", "integrated_gradients"):
        assert drawn[style.method_colour(method)] == style.method_line(method)["marker"]
    assert style.method_line("gradient")["marker"] != style.method_line("guided_backprop")["marker"]


def test_wrapped_labels_break_between_words_only():
    for method in style.CANONICAL_ORDER:
        for width in (8, 11, 14):
            assert style.method_label(method, width).split() == style.method_label(method).split(), (method, width)
    assert style.method_label("deeplift_revealcancel", 12) == "DeepLIFT\n(RevealCancel)"


def test_the_figures_built_in_controls_are_the_registry_model_free_methods():
    """style answers is_control for the built-in names without the registry (figure jobs skip torch)."""
    from saliency_sanity.methods import METHODS

    for name in style.CONTROL_ORDER:
        assert METHODS[name].model_free, name
    for name in style.CANONICAL_ORDER:  # a name the registry lacks yet (a planned method) counts as model-based
        assert name not in METHODS or not METHODS[name].model_free, name


def test_display_map_shows_the_stored_normalized_values_as_given():
    stored = np.array([[0.25, 0.5]], np.float16)  # the archive's maps are normalized already
    panel = style.display_map(stored)
    assert panel.dtype == np.float32
    np.testing.assert_array_equal(panel, [[0.25, 0.5]])  # not divided by its max
    np.testing.assert_array_equal(style.display_map(np.array([[-0.5, 0.25]]), signed=True), [[-0.5, 0.25]])
    np.testing.assert_array_equal(style.display_map(np.zeros((2, 2))), np.zeros((2, 2)))
    assert style.display_map(np.full((2, 2), np.nan)) is None
    assert style.display_map(np.zeros((0, 0))) is None
    with pytest.raises(ValueError, match=r"one \(H, W\) map"):
        style.display_map(np.zeros((1, 2, 2)))


def test_git_commit_is_a_short_hash_or_unknown(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?|unknown", git_commit())
    assert git_commit(tmp_path) == "unknown"  # not inside a git work tree
