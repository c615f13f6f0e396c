"""Time a full ``nbplane job run`` against ``--resume`` after editing only the last step.

The job's first step sleeps (5 s by default) and sets a variable the later steps use. After
a full run the last cell is edited and the job is run again with ``--resume``; nbplane should
restore the earlier steps' state and rerun only the edited step.
Target: the median resumed run takes under 10% of the full run's wall time. The resumes are
then repeated through a warm runner (``nbplane job warm start``), which skips the start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import (
    Summary,
    Timed,
    code_cell,
    compiled,
    fail,
    nbplane_command,
    replace_cell_source,
    run_timed,
    sqlite_url,
    warm_runner,
    write_job,
)
from rich.console import Console
from rich.table import Table

TARGET_FRACTION = 0.10
LAST_CELL = "record-result"


def last_cell_source(label: str, offset: int) -> str:
    """Source of the last step; the benchmark edits it by changing label and offset."""
    return (
        f"value = doubled + {offset}\n"
        "job_input.execute_query(\n"
        f"    f\"INSERT INTO resume_result (label, value) VALUES ('{label}', {{value}})\"\n"
        ")\n"
    )


def job_cells(sleep_seconds: float) -> list[dict[str, Any]]:
    """A slow first step, three quick steps, and a last step the benchmark edits."""
    return [
        code_cell(
            "slow-start",
            f"import time\ntime.sleep({sleep_seconds})\nslow_value = 21\n",
        ),
        code_cell(
            "create-tables",
            "%%vdksql\nCREATE TABLE resume_result (label TEXT NOT NULL, value INTEGER NOT NULL)",
        ),
        code_cell("double", "doubled = slow_value * 2\n"),
        code_cell(
            "check",
            "count = job_input.execute_query('SELECT COUNT(*) FROM resume_result')[0][0]\n"
            "assert count == 0, count\n",
        ),
        code_cell(LAST_CELL, last_cell_source("first", 0)),
    ]


def results(database: Path) -> list[tuple[Any, ...]]:
    """The rows the job's last step wrote."""
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT label, value FROM resume_result ORDER BY rowid").fetchall()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sleep", type=float, default=5.0, help="seconds the first step sleeps (default 5)"
    )
    parser.add_argument(
        "--resumes",
        type=int,
        default=3,
        help="edit-and-resume rounds after the full run (default 3)",
    )
    parser.add_argument(
        "--check-target",
        action="store_true",
        help="exit 2 when the resumed run misses the 10%% target",
    )
    args = parser.parse_args()
    if args.resumes < 1 or args.sleep < 0:
        parser.error("--resumes must be at least 1 and --sleep not negative")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="nbplane-resume-") as tmp:
        root = Path(tmp)
        job = root / "job"
        notebook = write_job(job, job_cells(args.sleep))
        database = root / "target.sqlite"
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("NBPLANE_") and name not in ("VIRTUAL_ENV", "PYTHONPATH")
        }
        if "PYTHONPATH" in os.environ:  # PYTHONPATH=src times the checkout's nbplane
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env = compiled(env)
        warm = root / "warm-up"  # untimed, in its own home: compiles what a run imports
        warm_db = sqlite_url(warm / "target.sqlite")
        warm_up = [*nbplane_command(), "job", "run", str(job), "--db", warm_db]
        run_timed("warm-up", warm_up, env | {"NBPLANE_HOME": str(warm / "home")}, cwd=root)
        env |= {"NBPLANE_HOME": str(root / "nbplane-home"), "NBPLANE_DB_URL": sqlite_url(database)}
        run = [*nbplane_command(), "job", "run", str(job), "--db", sqlite_url(database)]

        full = run_timed("nbplane job run", run, env, cwd=root)
        expected: list[tuple[Any, ...]] = [("first", 42)]
        check(full, database, expected)
        resumed: list[float] = []
        for number in range(1, args.resumes + 1):
            # Each round is a new edit of the last cell, so each resume has one step to rerun.
            replace_cell_source(notebook, LAST_CELL, last_cell_source(f"edit{number}", number))
            result = run_timed("nbplane job run --resume", [*run, "--resume"], env, cwd=root)
            expected.append((f"edit{number}", 42 + number))
            check(result, database, expected)
            resumed.append(result.seconds)
        recorded = recorded_durations(job, env, root)[: args.resumes + 1]
        warm_resumed: list[float] = []
        with warm_runner(env) as served:
            for number in range(args.resumes + 1, 2 * args.resumes + 1):
                replace_cell_source(notebook, LAST_CELL, last_cell_source(f"edit{number}", number))
                label = "nbplane job run --resume (warm)"
                result = run_timed(label, [*run, "--resume"], env, cwd=root)
                expected.append((f"edit{number}", 42 + number))
                check(result, database, expected)
                warm_resumed.append(result.seconds)
            if served() != args.resumes:
                sys.exit(f"the warm runner served {served()} runs, not {args.resumes}")

    summary = Summary.of(resumed)
    fraction = summary.median / full.seconds
    table = Table(title=f"5-step job, first step sleeps {args.sleep:g} s, last step edited")
    for column in ("run", "median s", "min s", "max s", "runs"):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row("nbplane job run (full)", f"{full.seconds:.3f}", "", "", "1")
    table.add_row(
        "nbplane job run --resume",
        f"{summary.median:.3f}",
        f"{summary.low:.3f}",
        f"{summary.high:.3f}",
        str(summary.runs),
    )
    warm_summary = Summary.of(warm_resumed)
    table.add_row(
        "nbplane job run --resume, warm runner",
        f"{warm_summary.median:.3f}",
        f"{warm_summary.low:.3f}",
        f"{warm_summary.high:.3f}",
        str(warm_summary.runs),
    )
    console.print(table)
    console.print(
        f"ratio (resume median / full): [bold]{fraction:.1%}[/bold] "
        f"(the full run takes {full.seconds / summary.median:.1f}x as long); through a warm "
        f"runner: [bold]{warm_summary.median / full.seconds:.1%}[/bold]"
    )
    in_run = statistics.median(recorded[1:]) / recorded[0]
    console.print(
        f"inside the process (nbplane's run records, start-up and imports left out): "
        f"full {recorded[0]:.3f} s, resume median {statistics.median(recorded[1:]):.3f}"
        f" s, [bold]{in_run:.1%}[/bold]"
    )
    met = fraction < TARGET_FRACTION
    for how, ratio in (("cold", fraction), ("warm", warm_summary.median / full.seconds)):
        verdict = "[green]MET[/green]" if ratio < TARGET_FRACTION else "[red]NOT MET[/red]"
        console.print(
            f"target: resume under {TARGET_FRACTION:.0%} of the full run, {how}: {verdict}"
        )
    console.print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 2 if args.check_target and not met else 0


def recorded_durations(job: Path, env: dict[str, str], root: Path) -> list[float]:
    """Each run's duration as nbplane recorded it, oldest first."""
    listing = subprocess.run(
        [*nbplane_command(), "job", "runs", str(job), "--output", "json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = sorted(json.loads(listing.stdout), key=lambda run: run["id"])
    return [
        (
            datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])
        ).total_seconds()
        for run in runs
    ]


def check(result: Timed, database: Path, expected: list[tuple[Any, ...]]) -> None:
    """Exit with the run's output when it failed or its last step wrote the wrong rows."""
    if result.returncode != 0:
        fail(result, "non-zero exit code")
    try:
        found = results(database)
    except sqlite3.Error as exc:
        fail(result, f"cannot read resume_result: {exc}")
        return
    if found != expected:
        fail(result, f"resume_result holds {found}; want {expected}")


if __name__ == "__main__":
    sys.exit(main())
