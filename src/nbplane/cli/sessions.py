"""``nbplane session`` and ``nbplane connection``: Jupyter sessions on an nbplane server, and the
connections (credentials) admins grant to them.

They speak to the server that ``nbplane login`` saved (or ``NBPLANE_URL``/``NBPLANE_TOKEN``,
which a session's own terminal has, so these work inside a session without a login)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nbplane.cli._common import (
    CliConsole,
    DocumentedArgument,
    NbplaneGroup,
    confirm,
    output_format,
    print_json,
    print_result,
    yes_option,
)
from nbplane.errors import ConfigError

if TYPE_CHECKING:
    from nbplane.client import NbplaneClient
    from nbplane.sessions.models import DescribeConnection, DescribeSession, GrantConnection

STATUS_STYLE = {
    "running": "green",
    "starting": "cyan",
    "stopping": "yellow",
    "hibernated": "dim",
    "failed": "red",
}
STEP_MARK = {"done": "[green]✓[/]", "running": "[cyan]…[/]", "failed": "[red]✗[/]"}

session_argument = click.argument(
    "session_id",
    metavar="SESSION",
    cls=DocumentedArgument,
    description="The session's id, as `nbplane session list` shows it.",
)
connection_argument = click.argument(
    "name", cls=DocumentedArgument, description="The connection's name."
)


@contextmanager
def _remote() -> Iterator[NbplaneClient]:
    from nbplane.client import NbplaneClient

    with NbplaneClient.from_credentials() as client:
        yield client


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else ""


def _status(session: DescribeSession) -> str:
    return f"[{STATUS_STYLE.get(session.status, 'red')}]{session.status}[/]"


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected NAME=VALUE", field=option.lstrip("-"))
        values[key.strip()] = value
    return values


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def session() -> None:
    """Your Jupyter sessions on the server: start, open, hibernate (files kept), stop."""


@session.command()
@click.option(
    "--resource-class",
    "resource_class",
    help="Resources to run with; `nbplane session classes` lists yours (default: the default).",
)
@click.option("--image", help="Container image (Kubernetes servers; default: theirs).")
@click.option(
    "--env",
    "environment",
    multiple=True,
    metavar="NAME=VALUE",
    help="A variable for the server and its kernels; repeatable.",
)
@click.option("--directory", help="A directory of the workspace to open first.")
@click.option("--repository", help="A git repository to clone into the workspace.")
@click.option("--commit", help="Commit, branch or tag of --repository.")
@click.option(
    "--no-wait", is_flag=True, help="Print the session and return at once, without waiting."
)
@output_format
def start(
    resource_class: str | None,
    image: str | None,
    environment: tuple[str, ...],
    directory: str | None,
    repository: str | None,
    commit: str | None,
    no_wait: bool,
    output: str,
) -> None:
    """Start a session and show its progress, step by step, until its server is ready; prints
    the URL to open (with its token). The exit code is 1 if it failed."""
    from pydantic import ValidationError

    from nbplane.errors import InvalidInput
    from nbplane.sessions.models import CreateSession

    try:
        request = CreateSession(
            resource_class=resource_class,
            image=image,
            environment=_pairs(environment, "--env"),
            directory=directory,
            repository=repository,
            commit=commit,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise InvalidInput(
            f"{'/'.join(str(p) for p in problem['loc'])}: {problem['msg']}",
            field=str(problem["loc"][0]) if problem["loc"] else None,
        ) from None
    _start_and_show(lambda client: client.create_session(request), no_wait, output)


def _start_and_show(
    begin: Callable[[NbplaneClient], DescribeSession], no_wait: bool, output: str
) -> None:
    """What ``start`` and ``resume`` share: begin, follow the steps unless ``no_wait``, show
    the URL or why it failed; the exit code is 1 if it failed."""
    console = CliConsole(stderr=output == "json")
    with _remote() as client:
        described = begin(client)
        if not no_wait:
            described = _follow(client, console, described)
    if output == "json":
        print_json(described.model_dump(mode="json"))
    else:
        _report(console, described)
    if described.status == "failed":
        raise click.exceptions.Exit(1)


def _follow(client: NbplaneClient, console: Console, described: DescribeSession) -> DescribeSession:
    """Follow the session's events, a line per finished step (a live status on a terminal)."""
    console.print(
        f"session [bold]{described.id}[/] ({escape(described.resource_class)}): "
        f"{_status(described)}",
        highlight=False,
    )
    shown: set[str] = set()
    status = console.status("starting") if console.is_terminal else None
    if status is not None:
        status.start()
    try:
        for update in client.follow_session(described.id):
            described = update
            for step in update.steps:
                if step.status in ("done", "failed") and step.name not in shown:
                    shown.add(step.name)
                    detail = f" [dim]{escape(step.detail)}[/]" if step.detail else ""
                    console.print(
                        f"{STEP_MARK[step.status]} {escape(step.name)}{detail}", highlight=False
                    )
            if status is not None:
                running = [step.name for step in update.steps if step.status == "running"]
                status.update(f"{update.status}: {', '.join(running) or 'waiting'}")
    finally:
        if status is not None:
            status.stop()
    return client.get_session(described.id)


def _report(console: Console, described: DescribeSession) -> None:
    if described.status == "running" and described.url:
        console.print(f"session {described.id} is ready: {_status(described)}", highlight=False)
        console.print(f"open {escape(described.url)}", highlight=False, soft_wrap=True)
    else:
        reason = f": {escape(described.reason)}" if described.reason else ""
        console.print(f"session {described.id} {_status(described)}{reason}", highlight=False)
        if described.status == "failed":
            console.print(f"[dim]its logs: nbplane session logs {described.id}[/]", highlight=False)


@session.command("classes")
@output_format
def resource_classes(output: str) -> None:
    """List the resource classes you may start a session with."""
    with _remote() as client:
        found = client.session_resource_classes()
    if output == "json":
        print_json([described.model_dump(mode="json") for described in found])
        return
    table = Table(title="resource classes", title_justify="left")
    for column in ("name", "cpu", "memory", "description"):
        table.add_column(column)
    for described in found:
        name = described.name + (" (default)" if described.default else "")
        table.add_row(name, described.cpu or "", described.memory or "", described.description)
    CliConsole().print(table)


@session.command("list")
@click.option("--all", "everyone", is_flag=True, help="Everyone's sessions (admins).")
@output_format
def list_sessions(everyone: bool, output: str) -> None:
    """List your sessions: status, resources, when they will be culled."""
    with _remote() as client:
        found = client.list_sessions(everyone=everyone)
    if output == "json":
        print_json([described.model_dump(mode="json") for described in found])
        return
    table = Table(title="sessions, times in UTC", title_justify="left")
    table.add_column("session", no_wrap=True)
    if everyone:
        table.add_column("user")
    for column in ("status", "class", "created", "last activity", "culled at"):
        table.add_column(column)
    for described in found:
        culled = described.hibernate_at or described.delete_at
        cells = [
            _status(described),
            described.resource_class,
            _when(described.created_at),
            _when(described.last_activity_at),
            _when(culled),
        ]
        table.add_row(described.id, *([described.user] if everyone else []), *cells)
    CliConsole().print(table)


@session.command()
@session_argument
@output_format
def show(session_id: str, output: str) -> None:
    """Show a session: status, steps, URL, and when it will be hibernated or deleted."""
    with _remote() as client:
        described = client.get_session(session_id)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    console = CliConsole()
    rows = {
        "status": _status(described) + (" (ready)" if described.ready else ""),
        "reason": escape(described.reason or ""),
        "user": escape(described.user),
        "resource class": escape(
            f"{described.resource_class} ({described.cpu or '-'} CPU, {described.memory or '-'})"
        ),
        "url": escape(described.url or ""),
        "image": escape(described.image or ""),
        "directory": escape(described.directory or ""),
        "repository": escape(" ".join(filter(None, (described.repository, described.commit)))),
        "environment": escape(", ".join(described.environment)),
        "connections": escape(", ".join(described.connections)),
        "created": _when(described.created_at),
        "started": _when(described.started_at),
        "ready": _when(described.ready_at),
        "last activity": _when(described.last_activity_at),
        "hibernated": _when(described.hibernated_at),
        "hibernates at": _when(described.hibernate_at),
        "deleted at": _when(described.delete_at),
    }
    table = Table(title=f"session {described.id}, times in UTC", title_justify="left")
    table.show_header = False
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows.items():
        if value:
            table.add_row(key, value)
    for step in described.steps:
        detail = f" {escape(step.detail)}" if step.detail else ""
        table.add_row(f"step {escape(step.name)}", f"{step.status}{detail}")
    console.print(table)


@session.command()
@session_argument
@click.option(
    "--tail", type=click.IntRange(1, 10000), default=200, show_default=True, help="Lines."
)
def logs(session_id: str, tail: int) -> None:
    """Print the last lines of the session's server output (also after it failed)."""
    with _remote() as client:
        text = client.session_logs(session_id, tail)
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")


@session.command()
@session_argument
@output_format
def hibernate(session_id: str, output: str) -> None:
    """Stop the session's server and keep its files; `resume` starts it again."""
    with _remote() as client:
        described = client.hibernate_session(session_id)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    CliConsole().print(f"session {described.id} {_status(described)}", highlight=False)


@session.command()
@session_argument
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting until ready.")
@output_format
def resume(session_id: str, no_wait: bool, output: str) -> None:
    """Start a hibernated (or failed) session again, with its files; prints the URL."""
    _start_and_show(lambda client: client.resume_session(session_id), no_wait, output)


@session.command()
@session_argument
@click.option(
    "--purge", is_flag=True, help="Delete the session's files (workspace) too; asks first."
)
@yes_option
@output_format
def stop(session_id: str, purge: bool, yes: bool, output: str) -> None:
    """Stop a session for good and forget it; its files are kept unless --purge."""
    if purge:
        confirm(
            f"stop session {session_id} and delete its files?",
            yes,
            "refusing to delete a session's files",
        )
    with _remote() as client:
        client.delete_session(session_id, purge=purge)
    kept = "its files deleted" if purge else "its files kept"
    print_result(
        output,
        f"session {escape(session_id)} stopped and deleted ({kept})",
        {"id": session_id, "deleted": True, "purged": purge},
    )


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def connection() -> None:
    """Connections (admins): named credentials granted to users and teams; their sessions get
    them as NBPLANE_CONNECTION_<NAME>_<KEY> variables (and NBPLANE_DB_URL for a database)."""


@connection.command("create")
@connection_argument
@click.option(
    "--kind",
    type=click.Choice(["database", "s3", "generic"]),
    required=True,
    help="database: --set url=...; s3: bucket, access_key_id, secret_access_key, "
    "endpoint_url, region; generic: any keys.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="A value; with KEY alone it is asked for without echo (keeps it out of the shell "
    "history). Repeatable.",
)
@click.option("--description", help="What it is, for people.")
@click.option(
    "--default",
    "is_default",
    is_flag=True,
    help="database: the one NBPLANE_DB_URL points to when a user has several.",
)
@output_format
def create_connection(
    name: str,
    kind: str,
    settings: tuple[str, ...],
    description: str | None,
    is_default: bool,
    output: str,
) -> None:
    """Define a connection; its values are encrypted on the server and never shown again."""
    from pydantic import ValidationError

    from nbplane.errors import InvalidInput
    from nbplane.sessions.models import CreateConnection

    values: dict[str, str] = {}
    for item in settings:
        key, equals, value = item.partition("=")
        values[key.strip()] = value if equals else click.prompt(key, hide_input=True, err=True)
    try:
        request = CreateConnection.model_validate(
            {
                "name": name,
                "kind": kind,
                "description": description,
                "default": is_default,
                "values": values,
            }
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise InvalidInput(problem["msg"], field="/".join(str(p) for p in problem["loc"])) from None
    with _remote() as client:
        described = client.create_connection(request)
    _show_connection(described, output)


def _show_connection(described: DescribeConnection, output: str) -> None:
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    grants = ", ".join(f"{grant.kind} {grant.name}" for grant in described.grants) or "nobody"
    CliConsole().print(
        f"connection {escape(described.name)} ({described.kind}): keys "
        f"{escape(', '.join(described.keys))}; granted to {escape(grants)}",
        highlight=False,
    )


@connection.command("list")
@output_format
def list_connections(output: str) -> None:
    """List connections: kind, key names (never values), who they are granted to."""
    with _remote() as client:
        found = client.list_connections()
    if output == "json":
        print_json([described.model_dump(mode="json") for described in found])
        return
    table = Table(title="connections", title_justify="left")
    for column in ("name", "kind", "keys", "granted to", "description"):
        table.add_column(column)
    for described in found:
        grants = ", ".join(f"{grant.kind} {grant.name}" for grant in described.grants)
        name = described.name + (" (default)" if described.default else "")
        table.add_row(
            name, described.kind, ", ".join(described.keys), grants, described.description or ""
        )
    CliConsole().print(table)


@connection.command("delete")
@connection_argument
@yes_option
@output_format
def delete_connection(name: str, yes: bool, output: str) -> None:
    """Delete a connection and its grants; running sessions keep what they were given."""
    confirm(f"delete connection {name} and its grants?", yes, "refusing to delete a connection")
    with _remote() as client:
        client.delete_connection(name)
    print_result(output, f"connection {escape(name)} deleted", {"name": name, "deleted": True})


grantee_options = [
    click.option("--user", help="A user."),
    click.option("--team", help="A team: every member."),
]


def _grant(user: str | None, team: str | None) -> GrantConnection:
    from nbplane.sessions.models import GrantConnection

    if (user is None) == (team is None):
        raise ConfigError("pass exactly one of --user or --team", field="user")
    return GrantConnection(user=user, team=team)


@connection.command()
@connection_argument
@grantee_options[0]
@grantee_options[1]
@output_format
def grant(name: str, user: str | None, team: str | None, output: str) -> None:
    """Grant a connection to a user or a team; their sessions started from now on get it."""
    request = _grant(user, team)
    with _remote() as client:
        _show_connection(client.grant_connection(name, request), output)


@connection.command()
@connection_argument
@grantee_options[0]
@grantee_options[1]
@output_format
def revoke(name: str, user: str | None, team: str | None, output: str) -> None:
    """Revoke a grant; sessions started from now on no longer get the connection."""
    request = _grant(user, team)
    with _remote() as client:
        _show_connection(client.revoke_connection(name, request), output)
