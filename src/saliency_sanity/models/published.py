"""Models with published weights in the workflow: which ImageNet models a run includes, and their checkpoints.

The config's ``imagenet.models`` maps an architecture to its weights (a named source of the
registry entry, a file path, or ``random``). ``auto`` stands for the source the entry's
:class:`~saliency_sanity.models.registry.PublishedWeights` finds available; when none is, the
model is left out of the run with a stated reason (:func:`imagenet_runs`), which the workflow
prints and writes into ``figures/index.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from saliency_sanity.models.checkpoints import save_checkpoint
from saliency_sanity.models.registry import model_spec
from saliency_sanity.runtime import library_versions

AUTO = "auto"


@dataclass(frozen=True)
class ImagenetRuns:
    """The ImageNet models of a run, with ``auto`` resolved, and those left out with the reason."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # arch -> settings (weights resolved)
    left_out: dict[str, str] = field(default_factory=dict)  # arch -> one line: why, and the setting that brings it in


def imagenet_runs(section: Mapping[str, Any], data_dir: str | os.PathLike = "data",
                  mirror: str | os.PathLike | None = None) -> ImagenetRuns:
    """The models of the config's ``imagenet`` section (none when it is disabled)."""
    runs = ImagenetRuns()
    if not section.get("enabled"):
        return runs
    for arch, settings in (section.get("models") or {}).items():
        if settings is None:
            continue
        settings = dict(settings)
        if settings["weights"] == AUTO:
            published = model_spec(arch).published
            source = published.auto(data_dir, mirror) if published is not None and published.auto else None
            if source is None:
                runs.left_out[arch] = (
                    f"{arch} was left out: its published weights (imagenet.models.{arch}.weights: auto) are not in "
                    f"place and cannot be downloaded; bring it in with the config key imagenet.models.{arch}.weights "
                    f"set to the weights file's path (or to random, for untrained weights)")
                continue
            settings["weights"] = source
        runs.models[arch] = settings
    return runs


def write_published_checkpoint(arch: str, settings: Mapping[str, Any], data_dir: str | os.PathLike,
                               out: str | os.PathLike, mirror: str | os.PathLike | None = None) -> dict:
    """The workflow's model step for a model with published weights: build ``arch`` with the weights
    of ``settings`` (``seed`` and the model's ``weights``, ``weights_sha256``) and save it as ``out``
    (.pt) with its record (.json), like a trained MNIST model. Returns the record."""
    published = model_spec(arch).published
    if published is None:
        raise ValueError(f"architecture {arch!r} has no published weights; it is trained by the workflow")
    seed = int(settings.get("seed", 0))
    model, source = published.build(settings["weights"], data_dir, sha256=settings.get("weights_sha256"),
                                     seed=seed, mirror=mirror)
    record = {"dataset": "imagenet", "arch": arch, "seed": seed, **source, "library_versions": library_versions()}
    save_checkpoint(model, Path(out), record)
    return record
