"""Time a full ``nbplane job run`` against ``--resume`` after editing only the last step.

The job's first step sleeps (5 s by default) and sets a variable the later steps use. After
a full run the last cell is edited and the job is run again with ``--resume``; nbplane should
restore the earlier steps' state and rerun only the edited step.
Target: the resumed run takes under 10% of the full run's wall time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    Timed,
    code_cell,
    fail,
    nbplane_command,
    replace_cell_source,
    run_timed,
    sqlite_url,
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
    parser.add_argument("--sleep", type=float, default=5.0,
                        help="seconds the first step sleeps (default 5)")
    parser.add_argument("--check-target", action="store_true",
                        help="exit 2 when the resumed run misses the 10%% target")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="nbplane-resume-") as tmp:
        root = Path(tmp)
        job = root / "job"
        notebook = write_job(job, job_cells(args.sleep))
        database = root / "target.sqlite"
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("NBPLANE_") and name not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env |= {"NBPLANE_HOME": str(root / "nbplane-home"), "NBPLANE_DB_URL": sqlite_url(database)}
        run = [*nbplane_command(), "job", "run", str(job), "--db", sqlite_url(database)]

        full = run_timed("nbplane job run", run, env, cwd=root)
        check(full, database, [("first", 42)])
        replace_cell_source(notebook, LAST_CELL, last_cell_source("edited", 100))
        resumed = run_timed("nbplane job run --resume", [*run, "--resume"], env, cwd=root)
        check(resumed, database, [("first", 42), ("edited", 142)])

    fraction = resumed.seconds / full.seconds
    table = Table(title=f"5-step job, first step sleeps {args.sleep:g} s, last step edited")
    table.add_column("run")
    table.add_column("wall s", justify="right")
    table.add_row(full.label, f"{full.seconds:.3f}")
    table.add_row(resumed.label, f"{resumed.seconds:.3f}")
    console.print(table)
    console.print(f"ratio (resume / full): [bold]{fraction:.1%}[/bold] "
                  f"(full run is {full.seconds / resumed.seconds:.1f}x the resumed run)")
    met = fraction < TARGET_FRACTION
    verdict = "[green]MET[/green]" if met else "[red]NOT MET[/red]"
    console.print(f"target: resume under {TARGET_FRACTION:.0%} of the full run: {verdict}")
    return 2 if args.check_target and not met else 0


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
