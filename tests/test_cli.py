"""The command line: user errors give one clear line and exit 1; listings show the registries."""

from __future__ import annotations

import yaml

from saliency_sanity.cli import main
from saliency_sanity.methods import available_methods


def test_methods_lists_every_registered_method(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == available_methods()
    assert "[model-free]" in out


def test_config_prints_the_resolved_preset(capsys):
    assert main(["config", "--preset", "smoke"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["preset"] == "smoke" and config["randomization"]["n_images"] == 3


def test_missing_mirror_file_is_a_one_line_error(tmp_path, caplog):
    assert main(["download", "mnist", "--data-dir", str(tmp_path), "--mirror", str(tmp_path / "nowhere")]) == 1
    assert "SALIENCY_DATA_MIRROR" in caplog.text
    raw = tmp_path / "mnist" / "raw"
    assert not raw.exists() or not any(raw.iterdir())  # nothing half-written left behind


def test_missing_checkpoint_names_the_file(tmp_path, caplog):
    settings = '{"randomization": {"n_images": 1}}'
    code = main(["randomize", "--model", str(tmp_path / "absent.pt"), "--mode", "cascading",
                 "--settings", settings, "--out-csv", str(tmp_path / "a.csv"), "--out-maps", str(tmp_path / "a.npz")])
    assert code == 1
    assert "absent" in caplog.text
    assert not (tmp_path / "a.csv").exists()


def test_record_config_writes_config_and_versions(tmp_path):
    out = tmp_path / "config.yaml"
    assert main(["record-config", "--settings", '{"seed": 3}', "--out", str(out)]) == 0
    record = yaml.safe_load(out.read_text())
    assert record["config"] == {"seed": 3}
    assert "torch" in record["library_versions"]


def test_an_unknown_registered_name_is_one_error_line_naming_the_choices(caplog):
    """The parser takes names as strings (argparse choices would import every registry for every command);
    each command checks its name against the registry."""
    assert main(["evaluate", "no_such_evaluation", "--model", "m.pt", "--settings", "{}", "--out-csv", "x.csv"]) == 1
    assert "unknown evaluation 'no_such_evaluation'" in caplog.text and "'ablation'" in caplog.text
    assert main(["train", "--dataset", "mnist", "--arch", "efficientnet_lite0", "--settings", "{}",
                 "--out", "x.pt"]) == 1
    assert "unknown trainable architecture 'efficientnet_lite0'" in caplog.text
