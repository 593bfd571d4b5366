"""The error line of each job that failed, read from its log, so that it reaches the console.

Snakemake reports a failed shell job as "message: None ... check log file(s)"; the clear line the CLI wrote
(``... ERROR saliency_sanity.cli: <what is wrong and how to fix it>``) or, for a bug, the traceback's last line,
is in ``results/logs/``. The Snakefile's ``onerror`` handler prints them.
"""

from __future__ import annotations

from pathlib import Path

LOGS_DIR = Path("results/logs")
ERROR_MARK = " ERROR "


def error_line(log: Path) -> str | None:
    """The first ERROR line of a job's log or, when a traceback ended it, its last line; None when neither."""
    lines = [line.rstrip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if ERROR_MARK in line:
            return line.split(ERROR_MARK, 1)[1].split(": ", 1)[-1]  # the message, without time and logger
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return None


def failed_jobs(since: float, logs_dir: Path = LOGS_DIR) -> list[tuple[Path, str]]:
    """(log, error line) for each job log written at or after ``since`` (this run) that holds an error."""
    found = []
    for log in sorted(Path(logs_dir).rglob("*.log")):
        if log.stat().st_mtime >= since and (line := error_line(log)) is not None:
            found.append((log, line))
    return found
