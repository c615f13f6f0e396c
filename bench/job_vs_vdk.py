"""Time the same notebook jobs under ``nbplane job run`` and under VDK's ``vdk run``.

Two jobs: the 6-step job with one ingestion step, and the same job without that step (where
start-up is most of the time). Each run gets a fresh SQLite target file (and, unless
``--shared-home``, a fresh ``NBPLANE_HOME`` for nbplane), the wall time of the whole command is
measured, and every run's database is checked afterwards.
Targets (median wall times): without ingestion, nbplane at least 1.5x faster than VDK; with
ingestion, at least 3x faster than VDK's defaults and 2x faster than VDK with a 1 s aggregator.
nbplane is timed cold and warm: "nbplane (warm)" runs after ``nbplane job warm start``, in one
NBPLANE_HOME kept across its runs (the runner serves one home).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    Summary,
    Timed,
    code_cell,
    compiled,
    fail,
    nbplane_command,
    run_timed,
    sqlite_url,
    warm_runner,
    write_job,
)
from rich.console import Console
from rich.table import Table

NBPLANE = "nbplane"
NBPLANE_WARM = "nbplane (warm)"
NBPLANES = (NBPLANE, NBPLANE_WARM)
VDK = "vdk"
VDK_TUNED = "vdk (aggregator 1 s)"
DEFAULT_VDK_VENV = Path.home() / ".cache" / "nbplane-bench" / "vdk-venv"
VDK_PACKAGES = ("vdk-core", "vdk-notebook", "vdk-ipython", "vdk-sqlite")
READY_MARKER = ".nbplane-bench-ready"


@dataclass(frozen=True)
class Target:
    """nbplane's median must beat ``tool``'s median by ``speedup`` on one job."""

    job: str
    tool: str
    speedup: float


@dataclass(frozen=True)
class BenchJob:
    """One of the benchmark's jobs: its name, whether it ingests, and the tools timed on it."""

    name: str
    title: str
    ingests: bool
    tools: tuple[str, ...]


INGESTION = "ingestion"
NO_INGESTION = "no ingestion"
TARGETS = (
    Target(NO_INGESTION, VDK, 1.5),
    Target(INGESTION, VDK, 3.0),
    Target(INGESTION, VDK_TUNED, 2.0),
)


def job_cells(rows: int, ingest: bool = True) -> list[dict[str, Any]]:
    """Six ``vdk``-tagged cells: three SQL (one statement each), three Python, one ingesting;
    without ``ingest``, the same five cells without the ingesting one.

    VDK ingests asynchronously and flushes at job end, so no step reads ``bench_events``
    back; the benchmark checks it in the database after the run instead.
    """
    cells = [
        code_cell(
            "create-category",
            "%%vdksql\nCREATE TABLE bench_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        ),
        code_cell(
            "fill-category",
            "%%vdksql\nINSERT INTO bench_category (id, name) "
            "VALUES (0, 'alpha'), (1, 'beta'), (2, 'gamma')",
        ),
        code_cell(
            "create-events",
            "%%vdksql\nCREATE TABLE bench_events (id INTEGER, category TEXT, amount REAL)",
        ),
        code_cell(
            "compute-rows",
            "found = job_input.execute_query('SELECT name FROM bench_category ORDER BY id')\n"
            "categories = [row[0] for row in found]\n"
            "assert categories == ['alpha', 'beta', 'gamma'], categories\n"
            "rows = [\n"
            "    {'id': i, 'category': categories[i % len(categories)], 'amount': i * 1.5}\n"
            f"    for i in range({rows})\n"
            "]\n",
        ),
        code_cell(
            "ingest-rows",
            "for row in rows:\n"
            "    job_input.send_object_for_ingestion(\n"
            "        payload=row, destination_table='bench_events'\n"
            "    )\n",
        ),
        code_cell(
            "summarise",
            "%%vdksql\nCREATE TABLE bench_summary AS "
            "SELECT COUNT(*) AS n, GROUP_CONCAT(name, ',') AS names FROM bench_category",
        ),
    ]
    return [cell for cell in cells if ingest or cell["id"] != "ingest-rows"]


def check_database(path: Path, rows: int) -> str | None:
    """None when the run left the expected tables behind (``rows`` rows ingested into
    ``bench_events``), else what is wrong."""
    if not path.exists():
        return f"no database file at {path}"
    with sqlite3.connect(path) as conn:
        try:
            count, total = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM bench_events"
            ).fetchone()
            summary = conn.execute("SELECT n, names FROM bench_summary").fetchall()
        except sqlite3.Error as exc:
            return f"cannot read results: {exc}"
    expected_total = sum(i * 1.5 for i in range(rows))
    if count != rows or abs(total - expected_total) > 1e-6:
        return f"bench_events has {count} rows summing to {total}; want {rows} / {expected_total}"
    if summary != [(3, "alpha,beta,gamma")]:
        return f"bench_summary is {summary}; want [(3, 'alpha,beta,gamma')]"
    return None


def ensure_vdk(venv: Path) -> Path:
    """VDK's ``vdk`` script, creating its virtual environment first when missing."""
    vdk = venv / "bin" / "vdk"
    if vdk.exists() and (venv / READY_MARKER).exists():
        return vdk
    print(f"Creating VDK environment in {venv} (one-off, takes a minute)...", file=sys.stderr)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        # vdk-core ships as an sdist whose setup.py needs an older setuptools.
        [*pip, "setuptools<80", "wheel"],
        [*pip, "--no-build-isolation", *VDK_PACKAGES],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"VDK install step failed: {' '.join(step)}", file=sys.stderr)
            print(done.stdout + done.stderr, file=sys.stderr)
            sys.exit(1)
    (venv / READY_MARKER).write_text("ok\n", encoding="utf-8")
    return vdk


def base_env() -> dict[str, str]:
    """The current environment minus variables that would steer either tool elsewhere; both
    tools run from compiled bytecode, which the warm-up run compiles."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("NBPLANE_", "VDK_")) or name in ("VIRTUAL_ENV", "PYTHONPATH"):
            del env[name]
    return compiled(env)


def nbplane_env(home: Path, database: Path) -> dict[str, str]:
    """nbplane's environment: this one's ``PYTHONPATH`` is kept, so ``PYTHONPATH=src`` times
    this checkout's nbplane rather than the one installed in the virtual environment."""
    env = base_env() | {"NBPLANE_HOME": str(home), "NBPLANE_DB_URL": sqlite_url(database)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def run_nbplane(job: Path, work: Path, rows: int, home: Path, label: str) -> Timed:
    """One timed ``nbplane job run`` with the given state directory and its own SQLite file."""
    database = work / "target.sqlite"
    env = nbplane_env(home, database)
    command = [*nbplane_command(), "job", "run", str(job), "--db", sqlite_url(database)]
    result = run_timed(label, command, env, cwd=work)
    verify(result, database, rows)
    return result


def run_vdk(
    vdk: Path, job: Path, work: Path, rows: int, label: str, aggregator_timeout: int | None
) -> Timed:
    """One timed ``vdk run`` against its own SQLite file."""
    database = work / "target.sqlite"
    env = base_env() | {
        "VDK_DB_DEFAULT_TYPE": "SQLITE",
        "VDK_SQLITE_FILE": str(database),
        "VDK_INGEST_METHOD_DEFAULT": "sqlite",
    }
    if aggregator_timeout is not None:
        env["VDK_INGESTION_PAYLOAD_AGGREGATOR_TIMEOUT_SECONDS"] = str(aggregator_timeout)
    result = run_timed(label, [str(vdk), "run", str(job)], env, cwd=work)
    verify(result, database, rows)
    return result


def run_tool(
    tool: str, vdk: Path, job: Path, work: Path, rows: int, home: Path, label: str
) -> Timed:
    """One timed run of ``tool`` (a row of the table) on ``job``; ``home`` is nbplane's."""
    if tool in NBPLANES:
        return run_nbplane(job, work, rows, home, label)
    return run_vdk(vdk, job, work, rows, label, 1 if tool == VDK_TUNED else None)


def verify(result: Timed, database: Path, rows: int) -> None:
    """Exit with the run's output when it failed or left wrong data."""
    if result.returncode != 0:
        fail(result, "non-zero exit code")
    problem = check_database(database, rows)
    if problem:
        fail(result, problem)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per tool (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--rows", type=int, default=100, help="rows ingested (default 100)")
    parser.add_argument(
        "--vdk-venv",
        type=Path,
        default=DEFAULT_VDK_VENV,
        help=f"VDK's virtual environment (default {DEFAULT_VDK_VENV})",
    )
    parser.add_argument(
        "--vdk-tuned",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time VDK with a 1 s ingestion aggregator timeout (default on)",
    )
    parser.add_argument(
        "--shared-home",
        action="store_true",
        help="keep one NBPLANE_HOME across nbplane runs instead of a new one each",
    )
    parser.add_argument(
        "--check-target", action="store_true", help="exit 2 when nbplane misses a target"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.rows < 1:
        parser.error("--runs and --rows must be at least 1, --warmup at least 0")
    return args


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` shows them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    args = parse_args()
    vdk = ensure_vdk(args.vdk_venv)
    console = Console() if sys.stdout.isatty() else Console(width=132)  # a log keeps rows whole
    vdk_tools = (VDK, VDK_TUNED) if args.vdk_tuned else (VDK,)
    jobs = (
        BenchJob(NO_INGESTION, "no ingestion (5 steps)", False, (*NBPLANES, VDK)),
        BenchJob(INGESTION, f"{args.rows} rows ingested", True, (*NBPLANES, *vdk_tools)),
    )
    loads = [load_average()]
    console.print(f"load average at the start: {loads[0]} ({os.cpu_count()} CPUs)")
    seconds: dict[tuple[str, str], list[float]] = {
        (bench_job.name, tool): [] for bench_job in jobs for tool in bench_job.tools
    }
    cpu_seconds: dict[tuple[str, str], list[float]] = {key: [] for key in seconds}
    with (
        tempfile.TemporaryDirectory(prefix="nbplane-bench-") as tmp,
        warm_runner(nbplane_env(Path(tmp) / "warm-home", Path(tmp) / "unused.sqlite")) as served,
    ):
        root = Path(tmp)
        directories = {}
        for bench_job in jobs:
            directories[bench_job.name] = root / bench_job.name.replace(" ", "-")
            write_job(directories[bench_job.name], job_cells(args.rows, bench_job.ingests))
        for index in range(args.warmup + args.runs):
            timed = index >= args.warmup
            kind = f"run {index - args.warmup + 1}/{args.runs}" if timed else "warm-up"
            # Interleave the tools and jobs so drift in machine load hits them alike.
            results: list[Timed] = []
            for bench_job in jobs:
                rows = args.rows if bench_job.ingests else 0
                for tool in bench_job.tools:
                    work = fresh(root, f"run-{index}-{len(results)}")
                    home = root / "nbplane-home" if args.shared_home else work / "nbplane-home"
                    home = root / "warm-home" if tool == NBPLANE_WARM else home
                    label = f"{tool}, {bench_job.name}"
                    job = directories[bench_job.name]
                    result = run_tool(tool, vdk, job, work, rows, home, label)
                    results.append(result)
                    if timed:
                        seconds[bench_job.name, tool].append(result.seconds)
                        cpu_seconds[bench_job.name, tool].append(result.cpu_seconds)
            line = "  ".join(f"{r.label} {r.seconds:.3f}s" for r in results)
            console.print(f"[dim]{kind}: {line}[/dim]")
        warm_runs = (args.warmup + args.runs) * len(jobs)
        if served() != warm_runs:
            sys.exit(f"the warm runner served {served()} runs, not {warm_runs}: some ran cold")
    loads.append(load_average())
    summaries = {key: Summary.of(values) for key, values in seconds.items()}
    cpu = {key: Summary.of(values).median for key, values in cpu_seconds.items()}
    homes = "one shared NBPLANE_HOME" if args.shared_home else "a new NBPLANE_HOME per run"
    table = Table(
        title=f"nbplane job run vs vdk run: wall time of the whole command, SQLite, {homes}, "
        f"{args.runs} runs each"
    )
    columns = (
        "job",
        "tool",
        "median s",
        "min s",
        "max s",
        "/ nbplane",
        "vdk / this",
        "CPU s",
        "/ nbplane",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("job", "tool") else "right")
    for bench_job in jobs:
        nbplane = summaries[bench_job.name, NBPLANE]
        nbplane_cpu = cpu[bench_job.name, NBPLANE]
        vdk_median = summaries[bench_job.name, VDK].median
        for tool in bench_job.tools:
            summary = summaries[bench_job.name, tool]
            table.add_row(
                bench_job.title,
                tool,
                f"{summary.median:.3f}",
                f"{summary.low:.3f}",
                f"{summary.high:.3f}",
                f"{summary.median / nbplane.median:.2f}x",
                f"{vdk_median / summary.median:.2f}x",
                f"{cpu[bench_job.name, tool]:.3f}",
                f"{cpu[bench_job.name, tool] / nbplane_cpu:.2f}x",
            )
    console.print(table)
    console.print(
        "/ nbplane: the tool's median divided by nbplane's, cold (above 1: nbplane is faster). "
        "vdk / this: VDK's median (default settings) divided by the row's. CPU s: "
        "median user plus system CPU time of the command and its children, which a busy "
        "machine inflates less than wall time (warm rows: the client's only, the run's CPU is "
        "spent in the runner's child). VDK's default waits 2 s for more ingestion "
        f"payloads before a flush; {VDK_TUNED!r} lowers that to 1 s, the least it accepts."
    )
    missed = 0
    for target in TARGETS:
        if (target.job, target.tool) not in summaries:
            continue
        for nbplane_tool in NBPLANES:
            ours = summaries[target.job, nbplane_tool].median
            speedup = summaries[target.job, target.tool].median / ours
            met = speedup >= target.speedup
            missed += not met and nbplane_tool == NBPLANE_WARM  # the warm runner is for speed
            verdict = "[green]MET[/green]" if met else "[red]NOT MET[/red]"
            console.print(
                f"target, {target.job}: {nbplane_tool} at least {target.speedup:g}x faster than "
                f"{target.tool}: {speedup:.2f}x {verdict}"
            )
    console.print(f"load average at the start: {loads[0]}, at the end: {loads[1]}")
    return 2 if args.check_target and missed else 0


def fresh(root: Path, name: str) -> Path:
    """A new empty working directory for one run."""
    path = root / name
    path.mkdir()
    return path


if __name__ == "__main__":
    sys.exit(main())
