"""``nbplane job run`` piped (a CI log): each step's start and its end with its duration, as
appended lines (no live redraw, no escape codes)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import write_notebook
from tests.integration.test_cli_conventions import local, run_cli

__all__ = ["local"]  # the fixture, shared with the CLI conventions' tests


def test_piped_job_run_prints_each_steps_duration(local: dict[str, str], tmp_path: Path) -> None:
    job = tmp_path / "etl"
    job.mkdir()
    write_notebook(job / "10_main.ipynb", ["import time\ntime.sleep(0.3)", "print('done')"])
    result = run_cli(local, "job", "run", str(job))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    lines = result.stdout.splitlines()
    start = lines.index("▶ 1/2 10_main.ipynb cell 1")
    finished = re.fullmatch(r"✓ 1/2 10_main\.ipynb cell 1 (\d+\.\d\d)s", lines[start + 1])
    assert finished and float(finished[1]) >= 0.3, lines
    assert lines[start + 2 : start + 5] == [
        "▶ 2/2 10_main.ipynb cell 2",
        "  | done",
        lines[start + 4],
    ]
    assert re.fullmatch(r"✓ 2/2 10_main\.ipynb cell 2 \d+\.\d\ds", lines[start + 4]), lines
    assert re.search(r"^run 1 of etl succeeded in \d+\.\d\ds$", result.stdout, re.MULTILINE)
