"""``nbplane job``: run a job directory, look at its runs, create and export jobs."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from nbplane.cli._common import (
    CliConsole,
    DocumentedArgument,
    NbplaneGroup,
    output_format,
    output_format_or_path,
    output_format_saying,
    print_json,
    print_result,
    split_output,
)
from nbplane.jobs.definition import parse_arguments

if TYPE_CHECKING:
    from nbplane.jobs.models import DescribeRun

job_directory = click.argument(
    "directory",
    cls=DocumentedArgument,
    type=click.Path(path_type=Path),
    description="The job directory.",
)


REMOTE_COMMANDS = {
    name: f"nbplane.cli.deployments:{attribute}"
    for name, attribute in [
        ("deploy", "deploy"),
        ("execute", "execute"),
        ("list", "list_jobs"),
        ("show", "show"),
        ("executions", "executions"),
        ("execution", "execution"),
        ("logs", "logs"),
        ("cancel", "cancel"),
        ("properties", "properties"),
        ("secrets", "secrets"),
        ("download", "download"),
        ("delete", "delete"),
    ]
}
"""The commands of ``nbplane job`` that talk to a server (cli/deployments.py), imported only
when used."""


@click.group(
    cls=NbplaneGroup,
    help="Data jobs: a directory of notebooks, .py and .sql steps.",
    no_args_is_help=True,
    lazy_commands=REMOTE_COMMANDS,
)
def job() -> None:
    pass


@job.command(help="Run a job: its steps in order, with live progress and a summary.")
@job_directory
@click.option(
    "--arguments",
    help='Arguments as a JSON object, e.g. \'{"day": "2024-01-01"}\'; '
    "steps read them with job_input.get_arguments() and SQL as {name}.",
)
@click.option(
    "--db",
    help="SQLAlchemy URL of the database the job queries and ingests into "
    "(default: the job's config, then NBPLANE_DB_URL, then SQLite in NBPLANE_HOME).",
)
@click.option(
    "--resume",
    is_flag=True,
    default=False,
    help="Rerun only from the first step that failed in the last run or "
    "changed since it last succeeded; earlier steps are skipped and "
    "notebook namespaces restored from checkpoints.",
)
@click.option(
    "--from-step",
    help="Start at this step (name like 10_load.ipynb#3, file name, cell id or number), "
    "skipping the ones before.",
)
@output_format_saying(
    "table: progress and a summary for people; json: progress on stderr, then a summary "
    "of the run on stdout for scripts."
)
def run(
    directory: Path,
    arguments: str | None,
    db: str | None,
    resume: bool,
    from_step: str | None,
    output: str,
) -> None:
    # What a run imports (nbplane, SQLAlchemy, pydantic: most of the objects it ever makes,
    # all kept to its end) is imported without the garbage collector and then frozen: no
    # collection during the steps nor at exit scans it again, a tenth of a second of a short
    # job. The steps' own objects are collected as usual.
    gc.disable()
    try:
        from nbplane.jobs.models import RunStatus
        from nbplane.jobs.progress import ConsoleReporter
        from nbplane.jobs.runner import run_job
    finally:
        gc.freeze()
        gc.enable()

    console = CliConsole(file=sys.stderr if output == "json" else sys.stdout)
    record = run_job(
        directory,
        arguments=parse_arguments(arguments),
        db_url=db,
        resume=resume,
        from_step=from_step,
        reporter=ConsoleReporter(console),
    )
    if output == "json":
        print_json(run_summary(record))
    if console.is_terminal:  # a hint for a person; a log (CI, JupyterLab) keeps no paths
        console.print(
            f"[dim]record: nbplane job show-run {escape(str(directory))} {record.number} "
            "--html run.html[/]",
            highlight=False,
        )
    exit_codes = {RunStatus.SUCCEEDED: 0, RunStatus.CANCELLED: 130}
    raise click.exceptions.Exit(exit_codes.get(record.status, 1))


def run_summary(record: DescribeRun) -> dict[str, Any]:
    """What ``job run --output json`` prints at the end: the run, each step, and where it
    failed (file, cell, line), without the steps' outputs (``job show-run`` has them)."""
    error = record.error or {}
    failure = next((step.error for step in record.steps if step.error), None) or error
    return {
        "run": record.number,
        "id": record.id,
        "job": record.job_name,
        "status": record.status,
        "duration": record.duration,
        "arguments": record.arguments,
        "steps": [
            {
                "step": step.position + 1,
                "file": step.file,
                "cell": step.cell_number,
                "status": step.status,
                "duration": step.duration,
                "reason": step.reason,
            }
            for step in record.steps
        ],
        "failure": {
            key: failure.get(key)
            for key in (
                "message",
                "step",
                "file",
                "cell",
                "cell_id",
                "line",
                "line_text",
                "exception",
            )
            if failure.get(key) is not None
        }
        or None,
    }


@job.command(help="List the runs of a job, newest first.")
@job_directory
@click.option(
    "--limit",
    type=int,
    default=20,
    show_default=True,
    help="How many of the latest runs to list.",
)
@output_format
def runs(directory: Path, limit: int, output: str) -> None:
    from rich.table import Table

    from nbplane.jobs.history import list_runs

    records = list_runs(directory, limit=limit)
    if output == "json":
        print_json([r.model_dump(mode="json", exclude={"steps"}) for r in records])
        return
    table = Table(title=f"runs of {directory}", title_justify="left")
    for column in ("run", "started", "status", "duration", "steps", "arguments"):
        table.add_column(column)
    for record in records:
        counts: dict[str, int] = {}
        for step in record.steps:
            counts[step.status] = counts.get(step.status, 0) + 1
        steps = ", ".join(f"{n} {status}" for status, n in counts.items())
        duration = f"{record.duration:.2f}s" if record.duration is not None else ""
        style = "green" if record.status == "succeeded" else "red"
        table.add_row(
            str(record.number),
            f"{record.started_at:%Y-%m-%d %H:%M:%S}",
            f"[{style}]{record.status}[/]" + (" (resumed)" if record.resumed else ""),
            duration,
            steps,
            json.dumps(record.arguments),
        )
    CliConsole().print(table)


@job.command(
    "show-run", help="Show one run: its steps, statuses, timings, errors; optionally as HTML."
)
@job_directory
@click.argument(
    "number",
    cls=DocumentedArgument,
    type=int,
    description="The run's number among the job's runs, as `nbplane job runs` lists.",
)
@click.option(
    "--html",
    type=click.Path(path_type=Path),
    help="Write the run with its executed notebooks as one HTML page to this file.",
)
@output_format
def show_run(directory: Path, number: int, html: Path | None, output: str) -> None:
    from nbplane.jobs.history import get_run, render_run_html
    from nbplane.jobs.progress import run_table

    record = get_run(directory, number)
    if html is not None:
        html.write_text(render_run_html(directory, record), encoding="utf-8")
    if output == "json":
        print(record.model_dump_json(indent=2, exclude={"steps": {"__all__": {"outputs"}}}))
        return
    console = CliConsole()
    console.print(
        f"[bold]run {record.number}[/] of {escape(record.job_name)} · {record.status} · "
        f"started {record.started_at:%Y-%m-%d %H:%M:%S} · arguments "
        f"{escape(json.dumps(record.arguments))} · database {escape(record.db_url)}",
        highlight=False,
    )
    for note in record.plan:
        console.print(f"[cyan]↷ {escape(note)}[/]", highlight=False)
    console.print(run_table(record))
    if record.error:
        console.print(f"[red]{escape(record.error.get('message', ''))}[/]", highlight=False)
    if html is not None:
        console.print(f"wrote {escape(str(html))}", highlight=False)


@job.command(
    help="Delete a job's old run records, checkpoints resume no longer needs, and old runs' "
    "executed notebooks and outputs, as NBPLANE_RETENTION_* and the job's config.ini "
    "[retention] say; the options win over both."
)
@click.argument(
    "directory",
    cls=DocumentedArgument,
    type=click.Path(path_type=Path),
    required=False,
    description="The job directory (or --all).",
)
@click.option("--all", "every_job", is_flag=True, help="Prune every job this machine has runs of.")
@click.option("--dry-run", is_flag=True, help="Show what would go; remove nothing.")
@click.option(
    "--keep-runs", type=click.IntRange(min=0), help="Keep the newest N run records; 0: all."
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0),
    help="Keep no run record older than D days (the newest run stays); 0: no limit.",
)
@click.option(
    "--keep-outputs",
    type=click.IntRange(min=0),
    help="Keep executed notebooks and step outputs of the newest M runs; 0: of every kept run.",
)
@output_format
def prune(
    directory: Path | None,
    every_job: bool,
    dry_run: bool,
    keep_runs: int | None,
    keep_days: float | None,
    keep_outputs: int | None,
    output: str,
) -> None:
    from rich.table import Table

    from nbplane.errors import ConfigError
    from nbplane.jobs.retention import prune_local
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    if (directory is None) == (not every_job):
        raise ConfigError("name a job directory, or --all (not both)", field="directory")
    settings = get_settings()
    store = open_store(settings.resolved_store_url)
    try:
        options = {"keep_runs": keep_runs, "keep_days": keep_days, "keep_outputs": keep_outputs}
        found = prune_local(store, settings, directory, options, dry_run=dry_run)
    finally:
        store.close()
    if output == "json":
        print_json([prune.model_dump(mode="json") for prune in found])
        return
    verb = "would remove" if dry_run else "removed"
    table = Table(title=f"{verb} (--dry-run: nothing was)" if dry_run else verb)
    for column in ("job", "runs", "steps", "checkpoints", "notebooks", "outputs"):
        if column == "job":
            table.add_column(column, overflow="fold")  # a path whole, on several lines
        else:
            table.add_column(column, justify="right")
    for prune in found:
        table.add_row(
            escape(prune.job),
            *(
                str(count)
                for count in (
                    len(prune.runs),
                    prune.steps,
                    prune.checkpoints,
                    prune.notebooks,
                    prune.outputs,
                )
            ),
        )
    CliConsole().print(table)


@job.command(help="Create a job directory with an example notebook of tagged step cells.")
@click.argument(
    "name", cls=DocumentedArgument, description="Name of the new job (and its directory)."
)
@click.option("--team", help="The team that owns the job.")
@click.option(
    "--directory",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the job directory.",
)
@output_format
def create(name: str, team: str | None, directory: Path, output: str) -> None:
    from nbplane.jobs.scaffold import create_job

    path = create_job(name, team=team, parent=directory)
    if output == "json":
        print_json({"name": name, "team": team, "path": str(path)})
        return
    CliConsole().print(
        f"created job [bold]{escape(name)}[/] in {escape(str(path))}; run it with "
        f"[bold]nbplane job run {escape(str(path))}[/]",
        highlight=False,
    )


@job.command(help="Pack a job into a deployable zip, notebook outputs cleared.")
@job_directory
@click.option("--to", type=click.Path(path_type=Path), help="The zip file to write.")
@output_format_or_path
def export(directory: Path, to: Path | None, output: str) -> None:
    from nbplane.errors import ConfigError
    from nbplane.jobs.scaffold import export_job

    output, to = split_output(output, to)
    if to is None:
        raise ConfigError("name the zip file to write with --to", field="to")
    files = export_job(directory, to)
    if output == "json":
        print_json({"path": str(to), "files": files})
        return
    CliConsole().print(f"wrote {escape(str(to))} ({len(files)} files)", highlight=False)


@job.command(
    "to-notebook",
    help="Convert a job's .py and .sql steps into one notebook of step cells, in run order, "
    "in a new job folder (default: DIRECTORY-notebook beside it) with the job's config.",
)
@job_directory
@click.option(
    "--to",
    type=click.Path(path_type=Path),
    help="The notebook to write (default: DIRECTORY-notebook/NAME.ipynb).",
)
@output_format
def to_notebook(directory: Path, to: Path | None, output: str) -> None:
    from nbplane.jobs.convert import convert_job

    converted = convert_job(directory, to)
    if output == "json":
        print_json(
            {
                "notebook": str(converted.notebook),
                "steps": converted.steps,
                "copied": converted.copied,
            }
        )
        return
    CliConsole().print(
        f"wrote {escape(str(converted.notebook))} ({len(converted.steps)} steps); run it with "
        f"[bold]nbplane job run {escape(str(converted.notebook.parent))}[/]",
        highlight=False,
    )


@job.command(
    "run-execution",
    hidden=True,
    help="Run an execution of a deployed job (what job executors start).",
)
@click.argument("execution_id")
def run_execution_command(execution_id: str) -> None:
    from nbplane.deployments.execute import run_execution

    raise click.exceptions.Exit(run_execution(execution_id))


@job.group(
    cls=NbplaneGroup,
    help="A warm runner: a background process that has imported what `job run` needs, so "
    "local runs start at once. Opt-in; other commands are not affected.",
    no_args_is_help=True,
)
def warm() -> None:
    pass


def describe_runner(state: dict[str, object]) -> str:
    from nbplane.jobs.warm import is_stale

    stale = " (stale: nbplane's code changed since; it exits at its next run)"
    return (
        f"pid {state['pid']}, since {state['since']}, runs served: {state['served']}"
        f"{stale if is_stale(state) else ''}"
    )


def say_runner(output: str, state: dict[str, Any] | None, running: bool) -> None:
    """A runner's state as ``--output`` asks: a line, or pid, since, served and stale."""
    from nbplane.jobs.warm import is_stale

    if state is None:
        print_result(output, "no warm runner", {"running": False})
        return
    facts = {key: state.get(key) for key in ("pid", "since", "served")}
    line = f"warm runner {'running' if running else 'stopped'}: {describe_runner(state)}"
    print_result(output, escape(line), {"running": running, **facts, "stale": is_stale(state)})


@warm.command(name="start", help="Start this home's warm runner (nothing if one runs).")
@output_format
def warm_start(output: str) -> None:
    from nbplane.jobs import warm as runner
    from nbplane.settings import get_settings

    say_runner(output, runner.start(get_settings().home), running=True)


@warm.command(name="stop", help="Stop the warm runner; runs in progress finish first.")
@output_format
def warm_stop(output: str) -> None:
    from nbplane.jobs import warm as runner
    from nbplane.settings import get_settings

    say_runner(output, runner.stop(get_settings().home), running=False)


@warm.command(name="status", help="Whether a warm runner runs; exit code 1 if not.")
@output_format
def warm_status(output: str) -> None:
    from nbplane.jobs import warm as runner
    from nbplane.settings import get_settings

    state = runner.status(get_settings().home)
    say_runner(output, state, running=True)
    if state is None:
        raise click.exceptions.Exit(1)


def serve_warm() -> None:
    """The warm runner process (started by ``job warm start``); its runs call the CLI's main."""
    from nbplane.cli import main
    from nbplane.jobs import warm as runner
    from nbplane.settings import get_settings

    settings = get_settings()
    runner.serve(settings.home, settings.warm_idle_seconds, main)
