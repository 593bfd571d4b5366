"""The error line the onerror handler prints: the CLI's clear message, or a bug's exception line, from this run's logs."""

import os

from saliency_sanity.joblogs import error_line, failed_jobs


def test_the_error_line_is_the_clis_message_or_the_tracebacks_last_line(tmp_path):
    clear, bug, fine = tmp_path / "clear.log", tmp_path / "bug.log", tmp_path / "fine.log"
    clear.write_text("2026-12-04 10:00:00,000 INFO saliency_sanity.cli: start\n"
                     "2026-12-04 10:00:01,000 ERROR saliency_sanity.cli: no file x: run y\n")
    bug.write_text("Traceback (most recent call last):\n  File \"a.py\", line 1\nTypeError: bad operand\n\n")
    fine.write_text("2026-12-04 10:00:00,000 INFO saliency_sanity.cli: wrote z\n")
    assert error_line(clear) == "no file x: run y"
    assert error_line(bug) == "TypeError: bad operand"
    assert error_line(fine) is None


def test_only_logs_written_during_this_run_are_reported(tmp_path):
    (tmp_path / "train").mkdir()
    old, new = tmp_path / "train" / "old.log", tmp_path / "new.log"
    for log in (old, new):
        log.write_text("t ERROR saliency_sanity.cli: failed\n")
    os.utime(old, (1000, 1000))
    assert failed_jobs(since=2000, logs_dir=tmp_path) == [(new, "failed")]
