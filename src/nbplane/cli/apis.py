"""``nbplane api``: call the notebook APIs of an nbplane server and read their executions.

The same routes as ``curl`` would call (``/api/v1/notebooks``, ``/api/v1/executions``), through
:class:`nbplane.client.NbplaneClient`, on the server named by ``--url``/``--token``, else
``NBPLANE_URL``/``NBPLANE_TOKEN``, else the one ``nbplane login`` saved.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.markup import escape

from nbplane.cli import _deployments_view as view
from nbplane.cli._common import (
    EXIT_CODES,
    CliConsole,
    DocumentedArgument,
    NbplaneGroup,
    output_format,
    output_format_saying,
    print_json,
)
from nbplane.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from nbplane.apis.models import DescribeExecution, DescribeNotebook
    from nbplane.client import NbplaneClient

LONGEST_REQUEST = 300.0
"""The longest the server holds one request open (``?wait=``); longer waits ask again."""
STATUSES = ["queued", "running", "completed", "failed", "timed_out", "cancelled"]

FC = TypeVar("FC", bound=Callable[..., Any])


def wait_option(what: str) -> Callable[[FC], FC]:
    """``--wait [SECONDS]``: a bare ``--wait`` waits until the end."""
    return click.option(
        "--wait",
        type=click.FloatRange(min=0, min_open=True),
        is_flag=False,
        flag_value=float("inf"),
        metavar="[SECONDS]",
        help=f"{what}; the exit code is then 0 only if it completed (1 failed, timed out or "
        "still running, 130 cancelled).",
    )


api_name = click.argument(
    "name", cls=DocumentedArgument, description="The notebook API's name (its notebook's name)."
)
execution_argument = click.argument(
    "execution_id",
    metavar="EXECUTION",
    cls=DocumentedArgument,
    description="The execution's id, as `nbplane api run` printed it or `nbplane api "
    "executions` lists it.",
)


def remote(command: Callable[..., None]) -> Callable[..., None]:
    """The command's first argument is a client of the server ``--url``/``--token`` (these
    options), ``NBPLANE_URL``/``NBPLANE_TOKEN`` or the saved login name."""

    @click.option(
        "--url",
        help="The nbplane server (default: NBPLANE_URL, then the server of `nbplane login`).",
    )
    @click.option(
        "--token",
        "bearer",
        metavar="TOKEN",
        help="Bearer token for that server (default: NBPLANE_TOKEN, then the saved login's).",
    )
    @functools.wraps(command)
    def wrapper(url: str | None, bearer: str | None, **options: Any) -> None:
        from nbplane.client import NbplaneClient

        with NbplaneClient.from_credentials(url, bearer) as client:
            command(client, **options)

    return wrapper


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def api() -> None:
    """Notebook APIs on the server: list them, call them with parameters, and read their
    executions (status, output, executed notebook)."""


@api.command("list")
@output_format
@remote
def list_apis(client: NbplaneClient, output: str) -> None:
    """List the notebook APIs you may call, broken ones with the reason."""
    found = client.list_notebooks()
    if output == "json":
        print_json([described.model_dump(mode="json") for described in found])
        return
    table = _table("notebook APIs", "name", "status", "engine", "timeout", "parameters", "reason")
    for described in found:
        table.add_row(
            escape(described.name),
            described.status if described.status == "ok" else f"[red]{described.status}[/]",
            described.engine or "",
            f"{described.timeout:g}s" if described.timeout is not None else "",
            escape(", ".join(_parameters_of(described))),
            escape(described.reason or ""),
        )
    CliConsole().print(table)


@api.command()
@api_name
@output_format
@remote
def show(client: NbplaneClient, name: str, output: str) -> None:
    """Show a notebook API: its engine, timeout and the JSON Schemas of its input and
    output."""
    described = client.get_notebook(name)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    table = _fields(f"notebook API {described.name}")
    for field, value in [
        ("status", described.status),
        ("reason", described.reason),
        ("engine", described.engine),
        ("timeout", f"{described.timeout:g}s" if described.timeout is not None else None),
        ("parameters", ", ".join(_parameters_of(described)) or None),
        ("input", _compact(described.input) if described.input is not None else None),
        ("output", _compact(described.output) if described.output is not None else None),
    ]:
        if value is not None:
            table.add_row(field, escape(value))
    CliConsole().print(table)


@api.command()
@api_name
@click.option(
    "--parameters",
    metavar="JSON",
    help="The parameters as a JSON object, e.g. '{\"x\": 3}' (default: none).",
)
@click.option(
    "--parameters-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A file holding the parameters as a JSON object (instead of --parameters).",
)
@wait_option("Wait for the execution to end (at most SECONDS, if given) and show its result")
@output_format_saying(
    "table for people; json: the execution (final with --wait) as JSON on stdout."
)
@remote
def run(
    client: NbplaneClient,
    name: str,
    parameters: str | None,
    parameters_file: Path | None,
    wait: float | None,
    output: str,
) -> None:
    """Call a notebook API with parameters: start an execution, and with --wait, its result."""
    from nbplane.apis.models import SubmitExecution
    from nbplane.jobs.definition import parse_arguments

    if parameters is not None and parameters_file is not None:
        raise ConfigError("pass --parameters or --parameters-file, not both", field="parameters")
    if parameters_file is not None:
        values = parse_arguments(
            parameters_file.read_text(encoding="utf-8"), f"--parameters-file {parameters_file}"
        )
    else:
        values = parse_arguments(parameters, "--parameters")
    request = SubmitExecution(parameters=values)
    console = CliConsole(stderr=output == "json")
    first = None if wait is None else min(wait, LONGEST_REQUEST)
    started = time.monotonic()
    execution = client.submit_api_execution(name, request, wait=first)
    if wait is not None and not execution.status.final:
        console.print(
            f"execution [bold]{execution.id}[/] of {escape(name)}: {view.status(execution)}",
            highlight=False,
        )
        execution = _wait(client, execution, wait - (time.monotonic() - started))
    if output == "json":
        print_json(execution.model_dump(mode="json"))
    else:
        console.print(_execution_table(execution))
    if wait is None:
        console.print(
            f"[dim]its result: nbplane api execution {execution.id} --wait[/]", highlight=False
        )
        return
    _exit_as(execution, console)


@api.command()
@click.argument(
    "name",
    required=False,
    cls=DocumentedArgument,
    description="Only the executions of this notebook API (default: all).",
)
@click.option("--status", type=click.Choice(STATUSES), help="Only executions with this status.")
@click.option(
    "--owner", metavar="USER", help="Admins: only this user's executions (others see their own)."
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="How many."
)
@click.option(
    "--offset", type=click.IntRange(0), default=0, show_default=True, help="How many to skip."
)
@output_format
@remote
def executions(
    client: NbplaneClient,
    name: str | None,
    status: str | None,
    owner: str | None,
    limit: int,
    offset: int,
    output: str,
) -> None:
    """List your executions of notebook APIs, newest first (admins: everyone's)."""
    from nbplane.apis.models import ExecutionStatus, ListExecutionsQuery

    query = ListExecutionsQuery(
        notebook=name,
        status=ExecutionStatus(status) if status else None,
        owner=owner,
        limit=limit,
        offset=offset,
    )
    page = client.list_api_executions(query)
    if output == "json":
        print_json(page.model_dump(mode="json"))
        return
    shown = f"{offset + 1}-{offset + len(page.items)} of {page.total}" if page.items else "none"
    table = _table(
        f"executions{' of ' + name if name else ''} ({shown})",
        "id",
        "notebook",
        "status",
        "created",
        "took",
        "owner",
        "reason",
    )
    for item in page.items:
        table.add_row(
            item.id,
            escape(item.notebook),
            view.status(item),
            view.when(item.created_at),
            view.took(item),
            escape(item.created_by or ""),
            escape(item.reason or ""),
        )
    CliConsole().print(table)


@api.command()
@execution_argument
@wait_option("Wait for it to end (at most SECONDS, if given)")
@output_format
@remote
def execution(client: NbplaneClient, execution_id: str, wait: float | None, output: str) -> None:
    """Show an execution: status, why it ended so, parameters, output, timings."""
    described = client.get_api_execution(execution_id)
    if wait is not None:
        described = _wait(client, described, wait)
    console = CliConsole()
    if output == "json":
        print_json(described.model_dump(mode="json"))
    else:
        console.print(_execution_table(described))
    if wait is not None:
        _exit_as(described, CliConsole(stderr=True))


@api.command()
@execution_argument
@output_format
@remote
def cancel(client: NbplaneClient, execution_id: str, output: str) -> None:
    """Cancel a queued or running execution."""
    described = client.cancel_api_execution(execution_id)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    state = "now" if described.status.final else "cancel requested"
    CliConsole().print(
        f"execution {described.id} {state}: {view.status(described)}", highlight=False
    )


@api.command("output")
@execution_argument
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write it to this file instead of stdout.",
)
@click.option(
    "--html",
    is_flag=True,
    help="The executed notebook as one HTML page (its cells, outputs and, on failure, what "
    "failed) instead of the saved output.",
)
@output_format_saying(
    "table and json print the output itself (JSON) or the HTML; with --to, json prints "
    '{"execution", "path", "bytes"}.'
)
@remote
def output_command(
    client: NbplaneClient, execution_id: str, target: Path | None, html: bool, output: str
) -> None:
    """Print what an execution's notebook saved (save_output), or its executed notebook as
    HTML; an execution that saved nothing is an error saying its status and why."""
    if html:
        text = client.api_execution_html(execution_id)
    else:
        text = json.dumps(client.api_execution_output(execution_id), indent=2) + "\n"
    if target is None:
        click.echo(text, nl=False)
        return
    size = target.write_text(text, encoding="utf-8")
    if output == "json":
        print_json({"execution": execution_id, "path": str(target), "bytes": size})
        return
    CliConsole().print(f"wrote {escape(str(target))}", highlight=False)


def _wait(client: NbplaneClient, execution: DescribeExecution, seconds: float) -> DescribeExecution:
    """The execution once final, or as it is after ``seconds``; one long-polled request at a
    time, never one per second."""
    deadline = time.monotonic() + seconds
    while not execution.status.final:
        left = min(LONGEST_REQUEST, deadline - time.monotonic())
        if left <= 0:
            break
        execution = client.get_api_execution(execution.id, wait=left)
    return execution


def _exit_as(execution: DescribeExecution, console: CliConsole) -> None:
    if not execution.status.final:
        console.print(
            f"execution {execution.id} is still {execution.status}: `nbplane api execution "
            f"{execution.id} --wait` waits on",
            highlight=False,
        )
    raise click.exceptions.Exit(EXIT_CODES.get(execution.status, 1))


def _execution_table(execution: DescribeExecution) -> Table:
    table = _fields(f"execution {execution.id} of {execution.notebook}")
    for field, value in [
        ("id", execution.id),
        ("notebook", escape(execution.notebook)),
        ("status", view.status(execution)),
        ("reason", escape(execution.reason) if execution.reason else None),
        ("parameters", escape(_compact(execution.parameters))),
        ("output", escape(_compact(execution.output)) if execution.has_output else None),
        ("created", view.when(execution.created_at)),
        ("started", view.when(execution.started_at) or None),
        ("finished", view.when(execution.finished_at) or None),
        ("took", view.took(execution) or None),
        ("owner", escape(execution.created_by) if execution.created_by else None),
        ("team", escape(execution.team) if execution.team else None),
        ("engine", execution.engine),
        ("attempts", str(execution.attempts)),
        ("timings", _timings(execution.timings) or None),
    ]:
        if value is not None:
            table.add_row(field, value)
    return table


def _timings(timings: dict[str, float]) -> str:
    """Where the execution's time went, hop by hop in order: ``queue 0.8 ms, cells 4.1 ms``."""
    return ", ".join(f"{hop} {milliseconds:.1f} ms" for hop, milliseconds in timings.items())


def _table(title: str, *columns: str) -> Table:
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    return table


def _fields(title: str) -> Table:
    """A table of one thing: a field and its value a row (piped: ``field<TAB>value``)."""
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    return table


def _parameters_of(described: DescribeNotebook) -> list[str]:
    """The input's parameter names, a required one marked with ``*``."""
    schema = described.input or {}
    required = set(schema.get("required", []))
    return [f"{name}*" if name in required else name for name in schema.get("properties", {})]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
