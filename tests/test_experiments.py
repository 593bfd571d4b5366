"""The randomization-test runner: file contracts, stage logic, seeding and error cases.

Fast: the paper's models untrained, 3 fake test images, and a private registry of cheap
methods (one that needs the model, a model-free control, a stochastic one, one the MLP lacks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from saliency_sanity import similarity
from saliency_sanity.contracts import SIMILARITY_COLUMNS
from saliency_sanity.data import DATASETS, Examples, register_dataset
from saliency_sanity.randomization import runner as experiments
from saliency_sanity.methods import registry
from saliency_sanity.models import MnistCNN
from saliency_sanity.models import build_model, save_checkpoint
from saliency_sanity.similarity import METRICS

N_IMAGES = 3
LABELS = torch.tensor([3, 7, 1, 0, 9])
METHODS = ["grad", "edges", "noise", "cam", "half"]
CALLS: list[tuple[str, dict]] = []
REAL_METHODS = dict(registry.METHODS)  # the built-in methods, registered by importing the package


def _register_cheap_methods() -> None:
    @registry.register("grad", needs_baseline=True)
    def grad(model, x, target, *, batch_size=None, baseline=None, scale=1.0):
        CALLS.append(("grad", {"batch_size": batch_size, "baseline": baseline, "scale": scale}))
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
        return g * scale

    @registry.register("edges", model_free=True)
    def edges(model, x, target):
        CALLS.append(("edges", {}))
        return x - x.roll(1, dims=-1)

    @registry.register("noise", model_free=True, stochastic=True)
    def noise(model, x, target, *, generator=None):
        return torch.randn(x.shape, generator=generator, device=x.device)

    @registry.register("cam", requires=("gradcam_layer",))
    def cam(model, x, target):
        return x * target[:, None, None, None]

    @registry.register("half", needs_baseline=True, completeness=True)
    def half(model, x, target, *, baseline=None):
        """A map that sums to half of f(x) - f(x'), spread in proportion to x + 1: completeness error 0.5."""
        with torch.no_grad():
            delta = model(x).gather(1, target[:, None]) - model(baseline).gather(1, target[:, None])
        weights = (x + 1) / (x + 1).flatten(1).sum(1).view(-1, 1, 1, 1)
        return 0.5 * delta.view(-1, 1, 1, 1) * weights


@pytest.fixture(scope="module", autouse=True)
def cheap_registry_and_fake_data():
    """The four cheap methods in place of the registry, and a fake test split, for this module."""
    images = torch.rand(len(LABELS), 1, 28, 28, generator=torch.Generator().manual_seed(0))

    with registry.METHODS.isolated(), DATASETS.isolated():
        @register_dataset("mnist", num_classes=10, splits=("test",))
        def fake_mnist(split, source):
            return Examples(images, LABELS)

        _register_cheap_methods()
        yield


def _checkpoint(folder: Path, arch: str, labels: str = "true", seed: int = 0) -> Path:
    name = f"mnist-{arch}" + ("-random-labels" if labels == "random" else "")
    path = folder / f"{name}.pt"
    save_checkpoint(build_model(arch, seed=seed), path, {"dataset": "mnist", "arch": arch, "labels": labels})
    return path


def _config(**randomization) -> dict:
    return {
        "seed": 0,
        "data_dir": "unused",
        "randomization": {"n_images": N_IMAGES, "explain": "predicted", "batch_size": 2, **randomization},
        "methods": {"grad": {"scale": 2.0}, "edges": None},
        "similarity": {"hog_pixels_per_cell": 7, "ssim_gaussian": True},
    }


def _run(tmp_path: Path, model: Path, mode: str = "cascading", config: dict | None = None, **kwargs):
    out_csv, out_maps = tmp_path / f"out/{mode}.csv", tmp_path / f"out/{mode}.npz"
    table = experiments.run_randomization_test(
        model, mode, config or _config(), out_csv, out_maps, device="cpu", **kwargs
    )
    return table, out_csv, out_maps


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "cnn": _checkpoint(folder, "cnn"),
        "mlp": _checkpoint(folder, "mlp"),
        "cnn-random": _checkpoint(folder, "cnn", "random", seed=1),
    }


@pytest.fixture(scope="module")
def cascaded(tmp_path_factory, models):
    """One cascading run on the CNN, shared by the tests that only read its outputs."""
    CALLS.clear()
    table, out_csv, out_maps = _run(tmp_path_factory.mktemp("cascading"), models["cnn"])
    return table, out_csv, out_maps, list(CALLS)


def test_csv_has_the_contract_columns_one_row_per_image_method_stage_metric(cascaded):
    table, out_csv, _, _ = cascaded
    csv = pd.read_csv(out_csv)
    assert list(csv.columns) == list(SIMILARITY_COLUMNS)
    stages = ["original", "logits", "fc", "conv2", "conv1"]
    assert len(csv) == N_IMAGES * len(METHODS) * len(stages) * len(METRICS)
    assert csv.groupby(["stage", "stage_index", "method", "metric", "image"]).size().eq(1).all()
    assert dict(zip(csv.stage_index, csv.stage)) == dict(enumerate(stages))
    assert set(csv.method) == set(METHODS) and set(csv.metric) == set(METRICS)
    assert set(csv.image) == set(range(N_IMAGES))
    assert (csv.dataset == "mnist").all() and (csv.model == "mnist-cnn").all() and (csv["mode"] == "cascading").all()
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)


def test_stage_zero_is_self_similar_and_randomization_changes_gradients(cascaded):
    table = cascaded[0]
    assert np.allclose(table[table.stage_index == 0].value, 1.0)
    last = table[table.stage == "conv1"].set_index(["method", "metric", "image"]).value
    assert np.allclose(last["edges"], 1.0)  # model-free and deterministic: the same at every stage
    assert (last["grad"]["spearman_signed"] < 0.99).all()
    assert (last["noise"]["spearman_signed"].abs() < 0.3).all()  # fresh noise each stage


MAP_ARRAYS = ("original_abs", "original_signed", "maps_abs", "maps_signed")
FLOAT16 = dict(rtol=2.0**-11, atol=1e-7)  # float16 rounding of values in [-1, 1]


def _archive(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _direct_grad_maps(data: dict[str, np.ndarray], normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """The stage-0 "grad" maps of the loaded model by a direct call, normalized: (abs, signed) (N, H, W)."""
    model = build_model("cnn", seed=0).eval()
    images = torch.from_numpy(data["images"])
    raw = registry.get_method("grad")(model, images, torch.from_numpy(data["targets"][0]), scale=2.0)
    return similarity.normalize_absolute(raw, normalization), similarity.normalize_signed(raw, normalization)


def test_maps_archive_keys_shapes_and_contents(cascaded):
    data = _archive(cascaded[2])
    assert set(data) == {"images", "labels", "methods", "baselines", "stages", *MAP_ARRAYS, "normalization", "targets",
                         "predictions", "dataset", "model", "mode", "completeness", "baseline_labels",
                         "baseline_display"}  # no display: MNIST has none
    # each method once, with its configured baseline: the registry's default (zero) for the path methods
    assert data["baselines"].tolist() == ["zero", "none", "none", "none", "zero"]
    assert data["baseline_labels"].tolist() == ["zero"] and data["baseline_display"].shape == (1, N_IMAGES, 1, 28, 28)
    assert data["baseline_display"].dtype == np.float16 and not data["baseline_display"].any()
    m, s = len(METHODS), 5
    assert data["images"].shape == (N_IMAGES, 1, 28, 28) and data["images"].dtype == np.float32
    assert data["labels"].tolist() == LABELS[:N_IMAGES].tolist() and data["labels"].dtype == np.int64
    assert data["methods"].tolist() == METHODS
    assert data["stages"].tolist() == ["original", "logits", "fc", "conv2", "conv1"]
    for key in ("original_abs", "original_signed"):
        assert data[key].shape == (m, N_IMAGES, 28, 28) and data[key].dtype == np.float16, key
    for key in ("maps_abs", "maps_signed"):  # grid_images absent: every image at every stage
        assert data[key].shape == (m, s, N_IMAGES, 28, 28) and data[key].dtype == np.float16, key
    assert data["original_abs"].min() >= 0 and data["original_abs"].max() <= 1
    assert data["original_signed"].min() >= -1 and data["original_signed"].max() <= 1
    np.testing.assert_array_equal(data["maps_abs"][:, 0], data["original_abs"])
    np.testing.assert_array_equal(data["maps_signed"][:, 0], data["original_signed"])
    assert str(data["normalization"]) == "max" and data["normalization"].shape == ()  # MNIST: the paper's choice
    assert data["targets"].shape == data["predictions"].shape == (s, N_IMAGES)
    assert data["targets"].dtype == data["predictions"].dtype == np.int64
    assert (str(data["dataset"]), str(data["model"]), str(data["mode"])) == ("mnist", "mnist-cnn", "cascading")
    assert data["dataset"].shape == ()
    # stage 0 maps are the method's maps of the loaded model, with the config's params, normalized as compared
    absolute, signed = _direct_grad_maps(data, "max")
    np.testing.assert_allclose(data["original_abs"][0], absolute, **FLOAT16)
    np.testing.assert_allclose(data["original_signed"][0], signed, **FLOAT16)
    assert data["original_abs"][0].max() == 1.0  # max normalization: the peak is exactly 1


def test_grid_images_keeps_every_stage_for_the_first_images_only(tmp_path, models, cascaded):
    full = _archive(cascaded[2])
    config = _config(grid_images=2)
    config["similarity"]["normalization"] = "percentile"
    _, _, out_maps = _run(tmp_path, models["cnn"], config=config)
    data = _archive(out_maps)
    assert data["original_abs"].shape == data["original_signed"].shape == (len(METHODS), N_IMAGES, 28, 28)
    assert data["maps_abs"].shape == data["maps_signed"].shape == (len(METHODS), 5, 2, 28, 28)
    np.testing.assert_array_equal(data["maps_abs"][:, 0], data["original_abs"][:, :2])
    assert str(data["normalization"]) == "percentile"
    absolute, signed = _direct_grad_maps(data, "percentile")
    np.testing.assert_allclose(data["original_abs"][0], absolute, **FLOAT16)
    np.testing.assert_allclose(data["original_signed"][0], signed, **FLOAT16)
    assert not np.allclose(data["original_abs"], full["original_abs"])  # not the max normalization
    # more grid images than images: all of them
    _, _, out_maps = _run(tmp_path / "all", models["cnn"], config=_config(grid_images=50))
    np.testing.assert_array_equal(_archive(out_maps)["maps_abs"], full["maps_abs"])


@pytest.mark.parametrize("grid_images", [0, -1, 1.5, "2", True])
def test_grid_images_must_be_a_positive_integer(grid_images):
    with pytest.raises(ValueError, match="randomization.grid_images must be an integer >= 1"):
        experiments.Settings.from_config(_config(grid_images=grid_images))


def test_display_images_are_stored_when_the_caller_has_them(tmp_path):
    maps = np.random.default_rng(0).standard_normal((N_IMAGES, 3, 8, 8))
    prepared = similarity.prepare(maps, normalization="percentile", hog_pixels_per_cell=4)
    result = experiments.RunResult(
        series=[("edges", "none")],
        stages=["original", "top"],
        maps=[[experiments.KeptMaps.of(prepared)], [experiments.KeptMaps.of(prepared, 1)]],
        targets=[np.zeros(N_IMAGES)] * 2, predictions=[np.zeros(N_IMAGES)] * 2,
    )
    images, labels = torch.randn(N_IMAGES, 3, 8, 8), torch.zeros(N_IMAGES, dtype=torch.long)
    display = torch.rand(N_IMAGES, 3, 8, 8, dtype=torch.float64)
    identity = {"dataset": "imagenet", "model": "m", "mode": "cascading"}
    path = tmp_path / "maps.npz"
    experiments.write_maps(path, result, images, labels, identity, normalization="percentile",
                            display=display)
    data = _archive(path)
    assert data["display"].dtype == np.float32
    np.testing.assert_allclose(data["display"], display.numpy(), rtol=1e-6)
    assert data["original_abs"].shape == (1, N_IMAGES, 8, 8) and data["maps_abs"].shape == (1, 2, 1, 8, 8)
    np.testing.assert_allclose(data["original_signed"][0], prepared.signed, **FLOAT16)
    with pytest.raises(ValueError, match="display images have shape"):
        experiments.write_maps(path, result, images, labels, identity, normalization="percentile",
                                display=display[:2])


def test_targets_are_each_stages_own_prediction_or_the_true_label(tmp_path, models, cascaded):
    with np.load(cascaded[2]) as data:
        targets, predictions, labels = data["targets"], data["predictions"], data["labels"]
    np.testing.assert_array_equal(targets, predictions)
    assert (targets != labels).any()  # an untrained model does not predict the true labels
    assert len({tuple(row) for row in predictions}) > 1  # recomputed per stage
    _, _, out_maps = _run(tmp_path, models["cnn"], config=_config(explain="true_label"))
    with np.load(out_maps) as data:
        np.testing.assert_array_equal(data["targets"], np.tile(labels, (5, 1)))


def test_methods_get_config_params_batch_size_baseline_and_model_free_maps_are_reused(cascaded):
    calls = cascaded[3]
    grad_calls = [params for name, params in calls if name == "grad"]
    assert [(p["batch_size"], p["scale"]) for p in grad_calls] == [(2, 2.0)] * 5
    # the config names no baseline: the registry's default, zeros of the inputs' shape
    assert all(p["baseline"].shape == (N_IMAGES, 1, 28, 28) and not p["baseline"].any() for p in grad_calls)
    assert [name for name, _ in calls].count("edges") == 1


def test_each_map_of_a_complete_method_has_its_completeness_error_recorded(cascaded):
    with np.load(cascaded[2]) as data:
        errors, methods = data["completeness"], data["methods"].tolist()
    assert errors.shape == (len(METHODS), 5, N_IMAGES)
    np.testing.assert_allclose(errors[methods.index("half")], 0.5, rtol=1e-5)
    assert np.isnan(np.delete(errors, methods.index("half"), axis=0)).all()


def test_every_path_method_runs_with_every_listed_baseline_in_the_listed_modes(tmp_path, models, cascaded):
    """randomization.baselines: each path method again with each baseline, a series of its own in the CSV and the
    archive; the configured series are those of a run without the key; modes not listed run the configured only."""
    config = _config(baselines=["max_distance", "uniform"], baseline_modes=["cascading"])
    CALLS.clear()
    table, _, out_maps = _run(tmp_path, models["cnn"], config=config)
    series = list(dict.fromkeys(zip(table.method, table.baseline)))
    assert series == [("grad", "zero"), ("edges", "none"), ("noise", "none"), ("cam", "none"), ("half", "zero"),
                      ("grad", "max_distance"), ("half", "max_distance"), ("grad", "uniform"), ("half", "uniform")]
    pd.testing.assert_frame_equal(table[table.baseline.isin(["zero", "none"])].reset_index(drop=True),
                                  pd.read_csv(cascaded[1]), check_dtype=False)  # the configured series unchanged
    data = _archive(out_maps)
    assert list(zip(data["methods"].tolist(), data["baselines"].tolist())) == series
    x = torch.from_numpy(data["images"])
    farthest = (x < 0.5).float()  # the valid range [0, 1]: the top where x is in its lower half
    assert data["baseline_labels"].tolist() == ["zero", "max_distance", "uniform"]
    np.testing.assert_array_equal(data["baseline_display"][1], farthest.numpy())
    assert 0 <= data["baseline_display"][2].min() and data["baseline_display"][2].max() <= 1
    assert len(np.unique(data["baseline_display"][2])) > 100  # uniform noise, not a constant
    given = [p["baseline"] for name, p in CALLS if name == "grad"]
    assert len(given) == 3 * 5  # three baselines at five stages
    assert any(torch.equal(b, farthest) for b in given)
    np.testing.assert_allclose(data["completeness"][[i for i, (m, _) in enumerate(series) if m == "half"]], 0.5,
                               rtol=1e-4)  # each series' error against its own baseline's f(x') (float32 deltas)
    independent, _, _ = _run(tmp_path / "independent", models["cnn"], "independent", config=config)
    assert set(independent.baseline) == {"zero", "none"}


@pytest.mark.parametrize("key, value, message", [
    ("baselines", ["no_such_baseline"], "randomization.baselines"),
    ("baseline_modes", ["no_such_mode"], "randomization.baseline_modes"),
])
def test_listed_baselines_and_modes_are_checked_by_name(key, value, message):
    with pytest.raises(Exception, match=message):
        experiments.Settings.from_config(_config(**{key: value}))


def test_two_runs_write_identical_files(tmp_path, models, cascaded):
    _, csv_a, maps_a, _ = cascaded
    _, csv_b, maps_b = _run(tmp_path, models["cnn"])
    assert csv_a.read_bytes() == csv_b.read_bytes()
    with np.load(maps_a) as a, np.load(maps_b) as b:
        for key in MAP_ARRAYS:
            np.testing.assert_array_equal(a[key], b[key])
        noise = a["maps_signed"][METHODS.index("noise")]
        assert not np.array_equal(noise[0], noise[1])  # a fresh draw per stage, but reproducible


def test_independent_and_cascading_share_the_original_stage(tmp_path, models, cascaded):
    single, _, maps_i = _run(tmp_path, models["cnn"], "independent")
    with np.load(cascaded[2]) as c, np.load(maps_i) as i:
        for key in ("maps_abs", "maps_signed"):
            np.testing.assert_array_equal(c[key][:, :2], i[key][:, :2])  # original, logits: same models
        np.testing.assert_array_equal(c["original_signed"], i["original_signed"])
        assert not np.array_equal(c["maps_signed"][0, 2], i["maps_signed"][0, 2])  # fc: logits random or not
    assert (single["mode"] == "independent").all()


def test_labels_mode_needs_the_random_label_model_and_has_two_stages(tmp_path, models):
    with pytest.raises(ValueError, match="random_label_model_path"):
        _run(tmp_path, models["cnn"], "labels")
    with pytest.raises(ValueError, match="mnist/mlp model"):
        _run(tmp_path, models["cnn"], "labels", random_label_model_path=models["mlp"])
    table, _, out_maps = _run(tmp_path, models["cnn"], "labels", random_label_model_path=models["cnn-random"])
    assert dict(zip(table.stage_index, table.stage)) == {0: "original", 1: "random_labels"}
    assert len(table) == N_IMAGES * len(METHODS) * 2 * len(METRICS)
    with np.load(out_maps) as data:
        assert data["stages"].tolist() == ["original", "random_labels"]
        assert not np.array_equal(data["maps_signed"][0, 0], data["maps_signed"][0, 1])


def test_a_baseline_drawn_from_training_inputs_needs_a_train_split(tmp_path, models):
    config = _config()
    config["methods"]["grad"] = {"baseline": "training"}
    with pytest.raises(ValueError, match="has no train split"):
        _run(tmp_path, models["cnn"], config=config)


def test_unknown_method_in_config_is_an_error_listing_the_registered_ones(tmp_path, models):
    config = _config()
    config["methods"]["gradient_times_input"] = {}
    with pytest.raises(ValueError, match=r"gradient_times_input.*methods.gradient_times_input.*registered: grad, edges, noise, cam"):
        _run(tmp_path, models["cnn"], config=config)


def test_a_method_that_does_not_apply_is_skipped(tmp_path, models, caplog):
    with caplog.at_level("INFO", logger="saliency_sanity.harness"):
        table, _, out_maps = _run(tmp_path, models["mlp"])
    assert "skipping cam" in caplog.text
    assert "cam" not in set(table.method)
    with np.load(out_maps) as data:
        assert data["methods"].tolist() == ["grad", "edges", "noise", "half"]
        assert data["maps_abs"].shape[:2] == data["maps_signed"].shape[:2] == (4, 5)
        assert data["original_abs"].shape[0] == 4


def test_bad_mode_and_missing_record_are_clear_errors(tmp_path, models):
    with pytest.raises(ValueError, match="unknown randomization mode 'shuffle'"):
        _run(tmp_path, models["cnn"], "shuffle")
    orphan = tmp_path / "orphan.pt"
    orphan.write_bytes(models["cnn"].read_bytes())
    with pytest.raises(FileNotFoundError, match="orphan.json"):
        _run(tmp_path, orphan)


def test_outputs_are_written_atomically(tmp_path, models, cascaded):
    _, out_csv, out_maps, _ = cascaded
    assert sorted(p.name for p in out_csv.parent.iterdir()) == sorted([out_csv.name, out_maps.name])
    config = _config()
    config["similarity"]["hog_pixels_per_cell"] = 99  # fails after the maps, before any write
    with pytest.raises(ValueError, match="hog_pixels_per_cell"):
        _run(tmp_path / "failed", models["cnn"], config=config)
    assert not (tmp_path / "failed").exists()


def test_real_registry_runs_every_applicable_method(tmp_path, models, real_methods):
    """Every built-in method through the runner on the paper's CNN, with cheap params."""
    cheap = {"n_samples": 2, "noise_level": 0.15}
    config = _config()
    config["methods"] = {
        "integrated_gradients": {"steps": 2}, "smoothgrad": cheap, "smoothgrad_squared": cheap,
        "vargrad": cheap, "ig_smoothgrad": {**cheap, "steps": 2},
    }
    table, _, out_maps = _run(tmp_path, models["cnn"], "labels", config, random_label_model_path=models["cnn-random"])
    # opt-in methods run only where the config names them; CAM needs a pooled head the CNN does not have
    names = [name for name in registry.default_methods() if registry.get_method(name).applies_to(MnistCNN())]
    assert len(table) == N_IMAGES * len(names) * 2 * len(METRICS)
    assert np.allclose(table[table.stage_index == 0].value, 1.0)
    assert table.value.notna().all()
    with np.load(out_maps) as data:
        assert data["methods"].tolist() == names
        for key in MAP_ARRAYS:
            assert np.isfinite(data[key]).all() and np.abs(data[key]).max() <= 1, key


@pytest.fixture
def real_methods():
    """The built-in methods in place of this module's cheap ones, for one test."""
    with registry.METHODS.isolated():
        for name, method in REAL_METHODS.items():
            registry.METHODS.add(name, method)
        yield
