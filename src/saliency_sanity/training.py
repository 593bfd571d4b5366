"""Training of the paper's MNIST / Fashion-MNIST models, with true or permuted labels.

The ``settings`` argument is the ``training`` section of a config preset::

    validation_size: 5000          # first images of the training set held out
    batch_size: 50
    eval_batch_size: 1000          # optional: images per no-grad evaluation batch
    lr_schedule: constant          # optional: constant (paper) | cosine (decay to 0 over the run)
    true_labels:
      train_size: null             # optional: train on the first N (after the hold-out); null = all
      cnn: {epochs: 3, lr: 1.0e-3} # per architecture; may override batch_size and lr_schedule
      mlp: {epochs: 3, lr: 1.0e-4}
    random_labels:
      train_size: 5000             # memorize this many images with permuted labels
      cnn: {epochs: 60, lr: 1.0e-3}
      mlp: {epochs: 60, lr: 1.0e-4}
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from saliency_sanity.data import load_split, permute_labels, train_validation_split
from saliency_sanity.config import ConfigError, non_negative_int, one_of, positive_float, positive_int
from saliency_sanity.models import MODELS, build_model, save_checkpoint
from saliency_sanity.runtime import derive_seed, library_versions, resolve_device, seed_everything

LABEL_MODES = ("true", "random")
LR_SCHEDULES = ("constant", "cosine")
INITS = ("independent", "shared")  # the random-label model's initial weights: its own, or the true-label model's
DEFAULT_EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class TrainConfig:
    """The resolved settings of one training run."""

    labels: str
    epochs: int
    lr: float
    batch_size: int
    lr_schedule: str
    train_size: int | None
    validation_size: int
    eval_batch_size: int
    init: str = "independent"  # random labels: independent or shared initial weights (see init_seed)


def resolve_settings(settings: Mapping[str, Any], arch: str, labels: str) -> TrainConfig:
    """Pick one run's settings out of the ``training`` section; a bad value names its key."""
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    trainable = [name for name, spec in MODELS.items() if "trained" in spec.weights]
    if arch not in trainable:
        raise ValueError(f"unknown architecture {arch!r} for training; choose one of {sorted(trainable)}")
    section_key = f"{labels}_labels"
    section = _mapping(settings, section_key, "training")
    per_arch = _mapping(section, arch, f"training.{section_key}")
    prefix = f"training.{section_key}.{arch}"
    batch_size = _nearest("batch_size", per_arch, section, settings)
    lr_schedule = one_of(_nearest("lr_schedule", per_arch, section, settings) or "constant", LR_SCHEDULES,
                         "training.lr_schedule")
    train_size = section.get("train_size")
    return TrainConfig(
        labels=labels,
        epochs=positive_int(per_arch.get("epochs"), f"{prefix}.epochs"),
        lr=positive_float(per_arch.get("lr"), f"{prefix}.lr"),
        batch_size=positive_int(batch_size, "training.batch_size"),
        lr_schedule=lr_schedule,
        train_size=None if train_size is None else positive_int(train_size, f"training.{section_key}.train_size"),
        validation_size=non_negative_int(settings.get("validation_size"), "training.validation_size"),
        eval_batch_size=positive_int(settings.get("eval_batch_size", DEFAULT_EVAL_BATCH_SIZE), "training.eval_batch_size"),
        init=one_of(section.get("init", "independent"), INITS, f"training.{section_key}.init"),
    )


def init_seed(seed: int, config: TrainConfig) -> int:
    """The seed of a run's initial weights: ``seed`` for the true-label model; for the random-label
    model a seed of its own (``init: independent``, the default), or ``seed`` (``shared``).

    Why independent: two models that start from the same weights stay alike whatever they learn,
    which inflates the label test's similarity (guided backprop SSIM 0.47 shared against 0.29-0.34
    with separate initializations), and the paper trained its models separately.
    """
    if config.labels == "random" and config.init == "independent":
        return derive_seed(seed, "init", "random-labels")
    return seed


def _nearest(key: str, *levels: Mapping[str, Any]) -> Any:
    """The most specific setting of ``key``: per architecture, then per label mode, then the section."""
    return next((level[key] for level in levels if key in level), None)


def _mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {where}.{key} must be a mapping, got {value!r}")
    return value


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = DEFAULT_EVAL_BATCH_SIZE) -> float:
    """Accuracy of ``model`` on (images, labels), in no-grad batches on the model's device."""
    if len(images) == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        predicted = model(batch).argmax(dim=1).cpu()
        correct += int((predicted == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(images)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    desc: str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One pass over the data in a seeded random order; returns the mean training loss."""
    device = next(model.parameters()).device
    model.train()
    order = torch.randperm(len(images), generator=generator)
    total_loss = 0.0
    with tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", mininterval=1.0, leave=False) as bar:
        for start in bar:
            index = order[start : start + batch_size]
            x, y = images[index].to(device), labels[index].to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            batch_loss = loss.item()
            total_loss += batch_loss * len(index)
            bar.set_postfix(loss=f"{batch_loss:.3f}", refresh=False)
    return total_loss / len(images)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, n_images: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Cosine decay to zero over every step of the run, which lets a short run settle; None = constant lr."""
    if config.lr_schedule == "constant":
        return None
    steps = config.epochs * math.ceil(n_images / config.batch_size)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def training_data(
    dataset: str, data_dir: str | os.PathLike, config: TrainConfig, seed: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The train (with the labels trained on), validation and test sets of one run."""
    images, labels = load_split(dataset, data_dir, "train")
    train_x, train_y, val_x, val_y = train_validation_split(images, labels, config.validation_size)
    if config.train_size is not None:
        if config.train_size > len(train_x):
            raise ValueError(
                f"config key training.{config.labels}_labels.train_size is {config.train_size}, "
                f"but only {len(train_x)} training images remain after the validation hold-out"
            )
        train_x, train_y = train_x[: config.train_size], train_y[: config.train_size]
    if config.labels == "random":
        train_y = permute_labels(train_y, seed)
    data = {"train": (train_x, train_y), "test": load_split(dataset, data_dir, "test")}
    if config.validation_size:
        data["validation"] = (val_x, val_y)
    return data


def train_model(
    dataset: str,
    arch: str,
    labels: str,
    settings: Mapping[str, Any],
    data_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``build_model(arch, init_seed(seed, ...))`` with Adam and cross-entropy; write ``out_path`` (.pt) and its .json record.

    With ``labels="random"`` the model memorizes the first ``train_size`` training images (after the
    validation hold-out) with permuted labels. Same seed, same CPU: same weights.
    """
    started = time.perf_counter()
    config = resolve_settings(settings, arch, labels)
    torch_device = resolve_device(device)
    generator = seed_everything(seed)
    data = training_data(dataset, data_dir, config, seed)
    train_x, train_y = data["train"]
    model = build_model(arch, init_seed(seed, config)).to(torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config, len(train_x))
    losses = []
    for epoch in range(config.epochs):
        desc = f"{dataset}-{arch}-{labels} epoch {epoch + 1}/{config.epochs}"
        losses.append(train_epoch(model, optimizer, train_x, train_y, config.batch_size, generator, desc, scheduler))
    model.eval()
    record = {
        "dataset": dataset,
        "arch": arch,
        "labels": labels,
        "seed": seed,
        "init_seed": init_seed(seed, config),
        "epochs": config.epochs,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "lr_schedule": config.lr_schedule,
        "train_size": len(train_x),
        "validation_size": config.validation_size,
        "epoch_losses": losses,
        "train_acc": evaluate(model, train_x, train_y, config.eval_batch_size),
        "val_acc": evaluate(model, *data["validation"], config.eval_batch_size) if "validation" in data else None,
        "test_acc": evaluate(model, *data["test"], config.eval_batch_size),
        "device": str(torch_device),
        "torch_threads": torch.get_num_threads(),
        "library_versions": library_versions(),
    }
    record["wall_seconds"] = time.perf_counter() - started
    save_checkpoint(model.cpu(), Path(out_path), record)
    return record

