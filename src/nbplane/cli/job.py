"""``nbplane job``: run a job directory, look at its runs, create and export jobs."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nbplane.errors import ConfigError

job_app = typer.Typer(
    help="Data jobs: a directory of notebooks, .py and .sql steps.", no_args_is_help=True
)

JobDir = Annotated[Path, typer.Argument(help="The job directory.", show_default=False)]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def parse_arguments(text: str | None) -> dict[str, Any]:
    """``--arguments`` must be a JSON object; say where it is not."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--arguments is not valid JSON: {exc.msg} at column {exc.colno}", field="arguments"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"--arguments must be a JSON object, got {type(value).__name__}", field="arguments"
        )
    return value


@job_app.command()
def run(
    directory: JobDir,
    arguments: Annotated[
        str | None,
        typer.Option(
            help='Arguments as a JSON object, e.g. \'{"day": "2024-01-01"}\'; '
            "steps read them with job_input.get_arguments() and SQL as {name}."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL of the database the job queries and ingests into "
            "(default: the job's config, then NBPLANE_DB_URL, then SQLite in NBPLANE_HOME)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Rerun only from the first step that failed in the last run or "
            "changed since it last succeeded; earlier steps are skipped and "
            "notebook namespaces restored from checkpoints.",
        ),
    ] = False,
    from_step: Annotated[
        str | None,
        typer.Option(
            help="Start at this step (name like 10_load.ipynb#3, file name, cell id or number), "
            "skipping the ones before."
        ),
    ] = None,
) -> None:
    """Run a job: its steps in order, with live progress and a summary."""
    from nbplane.cli.progress import ConsoleReporter
    from nbplane.jobs.models import RunStatus
    from nbplane.jobs.runner import run_job

    console = Console(file=sys.stdout)
    record = run_job(
        directory,
        arguments=parse_arguments(arguments),
        db_url=db,
        resume=resume,
        from_step=from_step,
        reporter=ConsoleReporter(console),
    )
    console.print(
        f"[dim]record: nbplane job show-run {escape(str(directory))} {record.id} "
        "--html run.html[/]",
        highlight=False,
    )
    exit_codes = {RunStatus.SUCCEEDED: 0, RunStatus.CANCELLED: 130}
    raise typer.Exit(exit_codes.get(record.status, 1))


@job_app.command()
def runs(
    directory: JobDir,
    limit: Annotated[int, typer.Option(help="How many of the latest runs to list.")] = 20,
    output: Annotated[
        OutputFormat, typer.Option(help="table for people, json for scripts.")
    ] = OutputFormat.TABLE,
) -> None:
    """List the runs of a job, newest first."""
    from nbplane.jobs.history import list_runs

    records = list_runs(directory, limit=limit)
    if output == OutputFormat.JSON:
        print(json.dumps([r.model_dump(mode="json", exclude={"steps"}) for r in records], indent=2))
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
            str(record.id),
            f"{record.started_at:%Y-%m-%d %H:%M:%S}",
            f"[{style}]{record.status}[/]" + (" (resumed)" if record.resumed else ""),
            duration,
            steps,
            json.dumps(record.arguments),
        )
    Console().print(table)


@job_app.command("show-run")
def show_run(
    directory: JobDir,
    run_id: Annotated[int, typer.Argument(help="The run number, as `nbplane job runs` lists.")],
    html: Annotated[
        Path | None,
        typer.Option(
            help="Write the run with its executed notebooks as one HTML page to this file."
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option(help="table for people, json for scripts.")
    ] = OutputFormat.TABLE,
) -> None:
    """Show one run: its steps, statuses, timings, errors; optionally as HTML."""
    from nbplane.cli.progress import run_table
    from nbplane.jobs.history import get_run, render_run_html

    record = get_run(directory, run_id)
    if html is not None:
        html.write_text(render_run_html(directory, record), encoding="utf-8")
    if output == OutputFormat.JSON:
        print(record.model_dump_json(indent=2, exclude={"steps": {"__all__": {"outputs"}}}))
        return
    console = Console()
    console.print(
        f"[bold]run {record.id}[/] of {escape(record.job_name)} · {record.status} · "
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


@job_app.command()
def create(
    name: Annotated[str, typer.Argument(help="Name of the new job (and its directory).")],
    team: Annotated[str | None, typer.Option(help="The team that owns the job.")] = None,
    directory: Annotated[Path, typer.Option(help="Where to create the job directory.")] = Path("."),
) -> None:
    """Create a job directory with an example notebook of tagged step cells."""
    from nbplane.jobs.scaffold import create_job

    path = create_job(name, team=team, parent=directory)
    Console().print(
        f"created job [bold]{escape(name)}[/] in {escape(str(path))}; run it with "
        f"[bold]nbplane job run {escape(str(path))}[/]",
        highlight=False,
    )


@job_app.command()
def export(
    directory: JobDir,
    output: Annotated[Path, typer.Option("-o", "--output", help="The zip file to write.")],
) -> None:
    """Pack a job into a deployable zip, notebook outputs cleared."""
    from nbplane.jobs.scaffold import export_job

    files = export_job(directory, output)
    Console().print(f"wrote {escape(str(output))} ({len(files)} files)", highlight=False)
