"""figures/manifest.json records what made each figure; `saliency-sanity verify` names what no longer matches."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from saliency_sanity.cli import main
from saliency_sanity.provenance import (compare_results, config_hash, figures_missing_from_report, verify_manifest,
                                        write_manifest)

from test_workflow import SNAKEMAKE


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run directory with one figure (PDF, PNG), its input CSV and the config record."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "figures").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "figures" / "cascade-mnist-cnn.pdf").write_bytes(b"%PDF figure")
    (tmp_path / "figures" / "cascade-mnist-cnn.png").write_bytes(b"PNG figure")
    (tmp_path / "results" / "sim.csv").write_text("method,stage,value\ngradient,0,1.0\n")
    config = {"preset": "smoke", "seed": 0}
    (tmp_path / "results" / "config.yaml").write_text(yaml.safe_dump(
        {"config": config, "library_versions": {"torch": "2.5.1"}}))
    record = {"name": "cascade", "model": "mnist-cnn", "preset": "smoke", "commit": "abc1234-dirty",
              "created": "2026-12-04T00:00:00+00:00", "files": ["cascade-mnist-cnn.pdf", "cascade-mnist-cnn.png"],
              "inputs": {"similarity_csv": "results/sim.csv"}}
    write_manifest([record], Path("figures"), Path("results/config.yaml"))  # as the index rule calls it
    return tmp_path


def test_the_manifest_records_config_hash_commit_versions_and_every_files_sha256(run_dir):
    manifest = json.loads((run_dir / "figures" / "manifest.json").read_text())
    assert manifest["config_sha256"] == config_hash({"seed": 0, "preset": "smoke"})  # key order does not matter
    assert manifest["library_versions"] == {"torch": "2.5.1"}
    (figure,) = manifest["figures"]
    assert figure["commit"] == "abc1234-dirty" and figure["preset"] == "smoke"
    csv = figure["inputs"]["similarity_csv"]
    assert csv["sha256"] == hashlib.sha256((run_dir / "results" / "sim.csv").read_bytes()).hexdigest()
    assert [f["path"] for f in figure["files"]] == ["figures/cascade-mnist-cnn.pdf", "figures/cascade-mnist-cnn.png"]


def test_verify_passes_on_untouched_files_and_names_each_changed_or_missing_one(run_dir, capsys):
    assert verify_manifest(run_dir / "figures" / "manifest.json") == (4, [])
    assert main(["verify"]) == 0 and "all 4 files" in capsys.readouterr().out
    (run_dir / "results" / "sim.csv").write_text("method,stage,value\ngradient,0,0.5\n")
    (run_dir / "figures" / "cascade-mnist-cnn.png").unlink()
    checked, problems = verify_manifest(run_dir / "figures" / "manifest.json")
    assert checked == 4 and len(problems) == 2
    assert problems[0] == "cascade-mnist-cnn: figure file figures/cascade-mnist-cnn.png is missing"
    assert problems[1].startswith("cascade-mnist-cnn: input similarity_csv results/sim.csv changed: sha256 ")
    with pytest.raises(SystemExit, match="2 of 4 files"):
        main(["verify"])


def test_verify_without_a_manifest_says_what_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="snakemake figures/index.md"):
        verify_manifest(tmp_path / "manifest.json")


def _run(root, value, seconds):
    (root / "results" / "theory").mkdir(parents=True)
    (root / "results" / "theory" / "t.csv").write_text(f"model,value,wall_seconds\nm,{value},{seconds}\n")
    np.savez(root / "results" / "theory" / "m.npz", maps=np.arange(4.0) * value)
    (root / "results" / "benchmarks").mkdir()
    (root / "results" / "benchmarks" / "jobs.csv").write_text(f"rule,seconds\nt,{seconds}\n")


def test_two_runs_are_compared_on_their_results_not_on_how_long_they_took(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _run(a, 1.5, 2.0)
    _run(b, 1.5, 9.0)   # same results, other timings
    _run(c, 2.5, 2.0)   # other results
    assert compare_results(a, b) == (2, [])
    assert compare_results(a, c) == (2, ["results/theory/m.npz: differs", "results/theory/t.csv: differs"])
    (b / "results" / "theory" / "m.npz").unlink()
    assert compare_results(a, b)[1] == [f"results/theory/m.npz: missing from {b}"]


def test_check_report_finds_each_indexed_figure_embedded_in_a_real_snakemake_report(tmp_path, capsys):
    """A Snakemake report of a one-rule workflow embeds its figure; an indexed figure it lacks is named."""
    (tmp_path / "Snakefile").write_text(
        'rule draw:\n    output: report("figures/a-m.pdf", caption="caption.rst", category="a")\n'
        '    shell: "printf \'%%PDF-1.4 a figure\' > {output}"\n')
    (tmp_path / "caption.rst").write_text("A figure.\n")
    for args in (["--cores", "1"], ["--report", "report.html"]):
        done = subprocess.run([SNAKEMAKE, *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    index = tmp_path / "figures" / "index.md"
    index.write_text("## a-m\n\n- files: [a-m.pdf](a-m.pdf), [a-m.png](a-m.png)\n\n"
                     "## b-m\n\n- files: [b-m.pdf](b-m.pdf)\n")
    assert figures_missing_from_report(tmp_path / "report.html", index) == (2, ["b-m.pdf"])
    with pytest.raises(SystemExit, match="1 of 2 figures are missing"):
        main(["check-report", str(tmp_path / "report.html"), "--figures-index", str(index)])
    assert "b-m.pdf: listed in" in capsys.readouterr().out
