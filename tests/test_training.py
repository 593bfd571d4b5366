"""Training: the checkpoint + record contract, determinism, label randomization, settings errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from saliency_sanity.data import write_idx
from saliency_sanity.models import build_model, load_checkpoint
from saliency_sanity.training import (
    evaluate,
    init_seed,
    make_scheduler,
    resolve_settings,
    train_model,
    training_data,
)

N_TRAIN, N_TEST = 64, 16
SETTINGS = {
    "validation_size": 8,
    "batch_size": 16,
    "true_labels": {"cnn": {"epochs": 1, "lr": 1e-3}, "mlp": {"epochs": 1, "lr": 1e-4}},
    "random_labels": {"train_size": 24, "cnn": {"epochs": 2, "lr": 1e-3}, "mlp": {"epochs": 1, "lr": 1e-4}},
}
RECORD_KEYS = {
    "dataset", "arch", "labels", "seed", "init_seed", "epochs", "lr", "batch_size", "train_size", "train_acc",
    "test_acc", "val_acc", "wall_seconds", "device", "library_versions",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 + 16 image 'mnist' in IDX files: enough to train one tiny epoch."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "mnist" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One tiny true-label CNN run (seed 3), shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("models") / "mnist-cnn.pt"
    return out, train_model("mnist", "cnn", "true", SETTINGS, data_dir, out, device="cpu", seed=3)


def test_writes_checkpoint_and_record(data_dir: Path, trained: tuple[Path, dict]) -> None:
    out, record = trained
    assert out.is_file() and out.with_suffix(".json").is_file()
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert RECORD_KEYS <= on_disk.keys()
    assert on_disk == json.loads(json.dumps(record))
    assert (on_disk["dataset"], on_disk["arch"], on_disk["labels"], on_disk["seed"]) == ("mnist", "cnn", "true", 3)
    assert (on_disk["epochs"], on_disk["lr"], on_disk["batch_size"]) == (1, 1e-3, 16)
    assert on_disk["train_size"] == N_TRAIN - 8 and on_disk["device"] == "cpu"
    assert "torch" in on_disk["library_versions"]
    assert not list(out.parent.glob("*.tmp"))


def test_checkpoint_round_trips_to_the_recorded_accuracies(data_dir: Path, trained: tuple[Path, dict]) -> None:
    out, record = trained
    model = load_checkpoint(out)
    data = training_data("mnist", data_dir, resolve_settings(SETTINGS, "cnn", "true"), seed=3)
    assert evaluate(model, *data["test"]) == record["test_acc"]
    assert evaluate(model, *data["validation"]) == record["val_acc"]
    assert evaluate(model, *data["train"]) == record["train_acc"]


def test_same_seed_same_weights(data_dir: Path, trained: tuple[Path, dict], tmp_path: Path) -> None:
    train_model("mnist", "cnn", "true", SETTINGS, data_dir, tmp_path / "again.pt", device="cpu", seed=3)
    first = torch.load(trained[0], weights_only=True)["state_dict"]
    again = torch.load(tmp_path / "again.pt", weights_only=True)["state_dict"]
    initial = build_model("cnn", 3).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["fc.weight"], initial["fc.weight"]), "training did not change the weights"


def test_random_labels_trains_on_a_permuted_subset(data_dir: Path, tmp_path: Path) -> None:
    config = resolve_settings(SETTINGS, "cnn", "random")
    true = training_data("mnist", data_dir, resolve_settings(SETTINGS, "cnn", "true"), seed=0)["train"]
    x, y = training_data("mnist", data_dir, config, seed=0)["train"]
    assert len(x) == 24 and torch.equal(x, true[0][:24])
    assert sorted(y.tolist()) == sorted(true[1][:24].tolist()) and not torch.equal(y, true[1][:24])

    record = train_model("mnist", "cnn", "random", SETTINGS, data_dir, tmp_path / "r.pt", device="cpu")
    assert (record["labels"], record["train_size"], record["epochs"]) == ("random", 24, 2)
    assert record["train_acc"] == evaluate(load_checkpoint(tmp_path / "r.pt"), x, y)


def test_the_random_label_model_starts_from_its_own_weights_unless_shared() -> None:
    true, random = resolve_settings(SETTINGS, "cnn", "true"), resolve_settings(SETTINGS, "cnn", "random")
    assert random.init == "independent" and init_seed(5, true) == 5 and init_seed(5, random) != 5
    first = build_model("cnn", init_seed(5, true)).conv1.weight
    assert not torch.equal(first, build_model("cnn", init_seed(5, random)).conv1.weight)
    shared = copy.deepcopy(SETTINGS)
    shared["random_labels"]["init"] = "shared"
    assert init_seed(5, resolve_settings(shared, "cnn", "random")) == 5
    shared["random_labels"]["init"] = "same"
    with pytest.raises(ValueError, match="training.random_labels.init"):
        resolve_settings(shared, "cnn", "random")


def test_true_labels_train_size_is_optional(data_dir: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["true_labels"]["train_size"] = 10
    x, _ = training_data("mnist", data_dir, resolve_settings(settings, "cnn", "true"), seed=0)["train"]
    assert len(x) == 10


class FixedLogits(nn.Module):
    """Predicts class (first pixel > 0.5): a model whose accuracy can be worked out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x.flatten(1)[:, :1] - 0.5
        return self.scale * torch.cat([-first, first], dim=1)


def test_evaluate_counts_correct_predictions_across_batches() -> None:
    images = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]).reshape(5, 1, 1, 1)
    labels = torch.tensor([0, 1, 0, 0, 0])  # predictions 0 1 1 0 1: 3 of 5 right
    model = FixedLogits().train()
    assert evaluate(model, images, labels, batch_size=2) == pytest.approx(0.6)
    assert model.training, "evaluate must restore the model's mode"


@pytest.mark.parametrize(
    ("change", "labels", "key"),
    [
        (lambda s: s["true_labels"]["cnn"].update(epochs=0), "true", "training.true_labels.cnn.epochs"),
        (lambda s: s["true_labels"]["cnn"].update(lr=-1.0), "true", "training.true_labels.cnn.lr"),
        (lambda s: s.update(batch_size=0), "true", "training.batch_size"),
        (lambda s: s.update(validation_size=-1), "true", "training.validation_size"),
        (lambda s: s.pop("validation_size"), "true", "training.validation_size"),
        (lambda s: s.update(lr_schedule="step"), "true", "training.lr_schedule"),
        (lambda s: s["true_labels"]["cnn"].update(lr="fast"), "true", "training.true_labels.cnn.lr"),
        (lambda s: s["random_labels"].pop("cnn"), "random", "training.random_labels.cnn"),
        (lambda s: s["random_labels"].update(train_size=0.5), "random", "training.random_labels.train_size"),
        (lambda s: None, "noisy", "labels"),
    ],
)
def test_bad_settings_name_the_key(change, labels: str, key: str) -> None:
    settings = copy.deepcopy(SETTINGS)
    change(settings)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        resolve_settings(settings, "cnn", labels)


def test_train_size_larger_than_data_names_the_key(data_dir: Path, tmp_path: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["random_labels"]["train_size"] = 1000
    with pytest.raises(ValueError, match=r"training\.random_labels\.train_size"):
        train_model("mnist", "cnn", "random", settings, data_dir, tmp_path / "x.pt", device="cpu")
    assert not (tmp_path / "x.pt").exists()


def test_most_specific_setting_wins() -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["true_labels"]["lr_schedule"] = "cosine"
    settings["true_labels"]["mlp"].update(batch_size=100, lr="1e-4")  # YAML 1.1 reads 1e-4 as text
    mlp, cnn = resolve_settings(settings, "mlp", "true"), resolve_settings(settings, "cnn", "true")
    assert (mlp.batch_size, mlp.lr, mlp.lr_schedule) == (100, 1e-4, "cosine")
    assert (cnn.batch_size, cnn.lr_schedule) == (16, "cosine")
    assert resolve_settings(settings, "cnn", "random").lr_schedule == "constant"


def test_cosine_schedule_decays_to_zero_over_the_run() -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["true_labels"]["cnn"].update(epochs=2, lr_schedule="cosine")
    config = resolve_settings(settings, "cnn", "true")
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, n_images=40)  # 3 batches of 16 per epoch: 6 steps
    lrs = []
    for _ in range(6):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[2] == pytest.approx(config.lr / 2)  # cos(pi / 2): halfway
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert make_scheduler(optimizer, resolve_settings(SETTINGS, "cnn", "true"), 40) is None
