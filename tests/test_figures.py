"""Figures: every registered figure renders from synthetic runner outputs; records and index.

The synthetic inputs follow the runner's file contracts (DESIGN.md): 3 images, 4 methods (one a
model-free control), original + 3 randomization stages.
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
    mean_ci,
    report_caption,
    write_index,
)
from saliency_sanity.figures import style
from saliency_sanity.methods import METHODS, Method

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mnist-cnn"
METHOD_NAMES = ["guided_backprop", "gradient", "test_edge_control", "integrated_gradients"]
STAGES = {
    "cascading": ["original", "logits", "fc", "conv2"],
    "independent": ["original", "logits", "fc", "conv2"],
    "labels": ["original", "random_labels"],
}
METRICS = ["spearman_abs", "spearman_signed", "ssim", "hog"]
N_IMAGES, SIZE = 3, 28
# Figures made for each model from the randomization outputs; the theory figures (one fixed model
# each, FigureSpec.model) are tested in test_theory.py.
PER_MODEL = [name for name, spec in FIGURES.items() if spec.model is None]


@pytest.fixture(autouse=True)
def control_method(monkeypatch):
    """Register a model-free control for the test only (restored afterwards)."""
    monkeypatch.setitem(METHODS, "test_edge_control", Method("test_edge_control", lambda m, x, t: x, model_free=True))


def _images(rng: np.random.Generator) -> np.ndarray:
    """Digit-like images: a bright ring on a black background."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = []
    for k in range(N_IMAGES):
        r = np.hypot(yy - 14, xx - 14 + k)
        images.append(np.exp(-((r - 7 + k) ** 2) / 4) + 0.05 * rng.random((SIZE, SIZE)))
    return np.clip(np.stack(images)[:, None], 0, 1).astype(np.float32)


def _write_maps(path: Path, mode: str, rng: np.random.Generator) -> None:
    images = _images(rng)
    stages = STAGES[mode]
    maps = np.empty((len(METHOD_NAMES), len(stages)) + images.shape, np.float32)
    for m, method in enumerate(METHOD_NAMES):
        for s in range(len(stages)):
            keep = 1.0 if method in ("test_edge_control", "guided_backprop") else 1.0 / (1 + 2 * s)
            maps[m, s] = keep * images * np.sign(rng.standard_normal(images.shape)) + (1 - keep) * rng.standard_normal(images.shape)
    predictions = rng.integers(0, 10, (len(stages), N_IMAGES))
    np.savez(path, images=images, labels=np.array([3, 1, 4]), methods=np.array(METHOD_NAMES),
             stages=np.array(stages), maps=maps, targets=predictions, predictions=predictions,
             dataset=np.array("mnist"), model=np.array("cnn"), mode=np.array(mode))


def _write_csv(path: Path, mode: str, rng: np.random.Generator) -> None:
    rows = []
    for s, stage in enumerate(STAGES[mode]):
        for method in METHOD_NAMES:
            for metric in METRICS:
                for image in range(N_IMAGES):
                    value = 1.0 if s == 0 else 0.8 / (1 + s) + 0.1 * rng.standard_normal()
                    rows.append(dict(dataset="mnist", model="cnn", mode=mode, stage=stage, stage_index=s,
                                     method=method, metric=metric, image=image, value=value))
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
    assert 300 <= pixels.shape[0] <= 6000 and 300 <= pixels.shape[1] <= 6000, pixels.shape
    assert pixels[..., :3].std() > 0.01  # something was drawn
    record = json.loads(sidecar.read_text())
    assert record["name"] == name and record["files"] == [pdf.name, png.name]
    assert record["preset"] == "smoke" and record["commit"] == git_commit()
    assert MODEL in record["caption"] and record["caption"].endswith("Made with the smoke preset: 3 images, 1 epoch.")
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_pdf_embeds_truetype_fonts(made):
    data = made[1]["similarity_cascading"][0].read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # pdf.fonttype 42: embedded TrueType


def test_caption_reads_facts_off_the_data(made):
    def text(name):
        return json.loads(made[1][name][2].read_text())["caption"]

    assert f"Mean over {N_IMAGES} test images" in text("similarity_independent")
    assert "Test image 0 (label 3)" in text("cascading_grid")
    assert "predicted class" in text("cascading_grid")  # the runner's targets equal its predictions


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
    with pytest.raises(UnknownFigureError, match="registered figures: .*cascading_grid"):
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
        make_figure("similarity_cascading", MODEL, {"cascading_csv": csv}, tmp_path, preset="smoke")
    npz = tmp_path / "bad.npz"
    arrays = dict(np.load(inputs["cascading_maps"]))
    np.savez(npz, **dict(arrays, maps=arrays["maps"][:, :2]))
    with pytest.raises(FigureInputError, match="maps have shape"):
        load_maps(npz)


def test_report_captions_match_the_registry():
    """workflow/report/<name>.rst is generated from the registered caption (one source of text)."""
    report_dir = ROOT / "workflow" / "report"
    for name in FIGURES:
        assert (report_dir / f"{name}.rst").read_text() == report_caption(name), name
    assert "{{ snakemake.wildcards.model }}" in report_caption("cascading_grid")


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


def test_display_map_normalizes_per_panel():
    attribution = np.array([[[1.0, -2.0]], [[-3.0, 0.0]]])  # (C=2, H=1, W=2)
    np.testing.assert_allclose(style.display_map(attribution), [[1.0, 0.5]])  # |.| summed: 4, 2
    np.testing.assert_allclose(style.display_map(attribution, signed=True), [[-1.0, -1.0]])  # sums: -2, -2
    np.testing.assert_array_equal(style.display_map(np.zeros((1, 2, 2))), np.zeros((2, 2)))
    assert style.display_map(np.full((1, 2, 2), np.nan)) is None


def test_mean_ci_brackets_the_mean_and_drops_nan():
    mean, low, high = mean_ci(np.array([1.0, 1.0, np.nan]))
    assert (mean, low, high) == (1.0, 1.0, 1.0)
    values = np.random.default_rng(1).normal(0.5, 0.1, 400)
    mean, low, high = mean_ci(values)
    assert low < mean < high and high - low == pytest.approx(2 * 1.96 * 0.1 / 20, rel=0.25)
    assert np.isnan(mean_ci(np.array([np.nan]))[0])


def test_git_commit_is_a_short_hash_or_unknown(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?|unknown", git_commit())
    assert git_commit(tmp_path) == "unknown"  # not inside a git work tree
