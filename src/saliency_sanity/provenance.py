"""What made each figure, machine-readable: ``figures/manifest.json``, and its check against the disk.

:func:`write_manifest` gathers the figures' sidecar records (``figures/.index``) and the run's config
record (``results/config.yaml``) into one manifest: for every figure the config hash, the preset, the
git commit (``-dirty`` when tracked files had changes), the library versions, and the sha256 of the
figure's own files and of every input file it was drawn from. :func:`verify_manifest` re-hashes
those files and names each one that is missing or changed (``saliency-sanity verify``).
:func:`compare_results` checks that two runs (local and on Slurm, one and two cores, before and after a
refactor) wrote the same results (``saliency-sanity compare``); :func:`figures_missing_from_report` that
``snakemake --report`` embedded every figure (``saliency-sanity check-report``).
Paths are relative to the run directory, where Snakemake runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from saliency_sanity.contracts import BENCHMARKS_DIR, RESULT_SUFFIXES, RESULTS_DIR, TIMING_COLUMNS
from saliency_sanity.data.download import file_hash
from saliency_sanity.runtime import write_json

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the resolved config as canonical JSON: equal hashes, equal settings."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(records: list[Mapping[str, Any]], out_dir: Path, config_record: Path, root: Path = Path(".")) -> Path:
    """``<out_dir>/manifest.json`` for the figures' sidecar ``records`` (as :func:`write_index` reads them).

    ``config_record`` is the run's ``results/config.yaml`` (the resolved config and the library versions);
    it is hashed too, so a changed config shows up in :func:`verify_manifest`."""
    out_dir, root = Path(out_dir), Path(root)
    recorded = yaml.safe_load(Path(config_record).read_text())
    digests: dict[Path, str] = {}  # figures share inputs: each file is read once

    def hashed(path: Path) -> dict[str, str]:
        if path not in digests:
            digests[path] = file_hash(root / path, "sha256")
        return {"path": path.as_posix(), "sha256": digests[path]}

    figures = []
    for record in records:
        figures.append({
            "figure": record["name"], "model": record["model"], "preset": record["preset"],
            "commit": record["commit"], "created": record["created"],
            "files": [hashed(out_dir / name) for name in record["files"]],
            "inputs": {key: hashed(Path(path)) for key, path in sorted(record["inputs"].items())},
        })
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "config_sha256": config_hash(recorded["config"]),
        "config_record": hashed(Path(config_record)),
        "library_versions": recorded["library_versions"],
        "figures": figures,
    }
    path = out_dir / MANIFEST
    write_json(path, manifest)
    return path


def verify_manifest(manifest_path: Path, root: Path = Path(".")) -> tuple[int, list[str]]:
    """Re-hash every file the manifest names; returns how many were checked and one line per file that is
    missing or no longer matches (an empty list: everything is as recorded)."""
    manifest_path, root = Path(manifest_path), Path(root)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} does not exist; the figure index writes it (snakemake figures/index.md)")
    manifest = json.loads(manifest_path.read_text())
    entries = [("config record", manifest["config_record"])]
    for figure in manifest["figures"]:
        label = f"{figure['figure']}-{figure['model']}"
        entries += [(f"{label}: figure file", entry) for entry in figure["files"]]
        entries += [(f"{label}: input {key}", entry) for key, entry in figure["inputs"].items()]
    problems = []
    for what, entry in entries:
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"{what} {entry['path']} is missing")
        elif (digest := file_hash(path, "sha256")) != entry["sha256"]:
            problems.append(f"{what} {entry['path']} changed: sha256 {digest[:12]}..., recorded {entry['sha256'][:12]}...")
    return len(entries), problems


def compare_results(run: Path, reference: Path, results_dir: Path = RESULTS_DIR) -> tuple[int, list[str]]:
    """(files compared, differences) between the CSVs and maps of two run directories.

    Every result file ``run`` wrote must exist in ``reference`` with equal contents: byte-identical maps,
    and CSVs equal apart from the columns that time a step (:data:`TIMING_COLUMNS`); job timings are skipped."""
    run, reference = Path(run), Path(reference)
    timings = run / results_dir / BENCHMARKS_DIR.relative_to(RESULTS_DIR)  # how long, not what: never equal
    files = sorted(path.relative_to(run) for path in (run / results_dir).rglob("*")
                   if path.suffix in RESULT_SUFFIXES and timings not in path.parents)
    problems = []
    for file in files:
        theirs = reference / file
        if not theirs.is_file():
            problems.append(f"{file}: missing from {reference}")
        elif file.suffix == ".csv":
            ours, other = (pd.read_csv(path, dtype=str).drop(columns=list(TIMING_COLUMNS), errors="ignore")
                           for path in (run / file, theirs))
            if not ours.equals(other):
                problems.append(f"{file}: differs")
        elif file_hash(run / file, "sha256") != file_hash(theirs, "sha256"):
            problems.append(f"{file}: differs")
    return len(files), problems


def figures_missing_from_report(report_html: Path, index_md: Path) -> tuple[int, list[str]]:
    """(figures listed, those missing): each PDF that ``figures/index.md`` links must be embedded in the
    Snakemake report (as a data URI named after the file), not just mentioned."""
    listed = re.findall(r"\[([^\]\s]+\.pdf)\]\(", Path(index_md).read_text())
    report = Path(report_html).read_text(errors="replace")
    return len(listed), [name for name in listed if f"filename={name};base64," not in report]
