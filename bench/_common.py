"""Helpers shared by the benchmarks: notebook fixtures, locating nbplane, timed commands."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_NOTEBOOK = "10_job.ipynb"
JOB_CONFIG = "[owner]\nteam = bench\n"


def code_cell(cell_id: str, source: str, tags: Sequence[str] = ("vdk",)) -> dict[str, Any]:
    """A tagged nbformat-4.5 code cell whose source is stored as a list of lines.

    VDK only recognises ``%%vdksql`` cells when the source is a list of lines.
    """
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"tags": list(tags)},
        "execution_count": None,
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def write_job(directory: Path, cells: Sequence[dict[str, Any]]) -> Path:
    """Write a one-notebook job (``10_job.ipynb`` plus ``config.ini``) and return the notebook."""
    directory.mkdir(parents=True, exist_ok=True)
    notebook = {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = directory / JOB_NOTEBOOK
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    (directory / "config.ini").write_text(JOB_CONFIG, encoding="utf-8")
    return path


def replace_cell_source(notebook: Path, cell_id: str, source: str) -> None:
    """Rewrite one cell's source in place, as a person editing the notebook would."""
    document = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in document["cells"]:
        if cell.get("id") == cell_id:
            cell["source"] = source.splitlines(keepends=True)
            break
    else:
        raise KeyError(f"{notebook.name} has no cell {cell_id!r}")
    notebook.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def nbplane_command() -> list[str]:
    """The nbplane CLI of the running Python environment: its script, else ``python -m``."""
    script = Path(sys.executable).parent / ("nbplane.exe" if os.name == "nt" else "nbplane")
    if script.exists():
        return [str(script)]
    found = shutil.which("nbplane")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "nbplane"]


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Timed:
    """One finished command: its wall time, exit code and combined output."""

    label: str
    command: list[str]
    seconds: float
    returncode: int
    output: str


def run_timed(
    label: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> Timed:
    """Run a command to completion, timing the whole process."""
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    return Timed(label, command, elapsed, done.returncode, done.stdout)


def fail(result: Timed, why: str) -> None:
    """Print what went wrong with a run, including its full output, and exit non-zero."""
    print(f"\n{result.label} FAILED: {why}", file=sys.stderr)
    print(f"command: {' '.join(result.command)}", file=sys.stderr)
    print(f"exit code: {result.returncode}", file=sys.stderr)
    print("----- output -----", file=sys.stderr)
    print(result.output.rstrip(), file=sys.stderr)
    print("------------------", file=sys.stderr)
    sys.exit(1)


@dataclass(frozen=True)
class Summary:
    """Median, min and max of a list of wall times."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))
