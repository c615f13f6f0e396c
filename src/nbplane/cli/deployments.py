"""Remote ``nbplane job`` commands: deploy, execute and watch jobs on an nbplane server.

They speak to the server that ``nbplane login`` saved (or ``NBPLANE_URL``/``NBPLANE_TOKEN``)
through ``nbplane.client``; the local commands (``job run``, ``job runs``...) stay as they are.
Thin on purpose: work of several requests (deploy a directory, follow an execution, download a
version) is :mod:`nbplane.client.deploy`'s, shared with the JupyterLab extension, and how the
results look on a terminal is :mod:`nbplane.cli._deployments_view`'s.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from nbplane.cli import _deployments_view as view
from nbplane.cli._common import (
    EXIT_CODES,
    CliConsole,
    DocumentedArgument,
    DocumentedCommand,
    confirm,
    output_format,
    output_format_or_path,
    output_format_saying,
    print_json,
    print_result,
    split_output,
    yes_option,
)
from nbplane.cli.jobs import job_directory
from nbplane.client.deploy import (
    checked_name,
    deploy_directory,
    download_directory,
    follow_execution,
    latest_execution,
    only_team,
    steps_done,
)
from nbplane.errors import ConfigError, Conflict
from nbplane.jobs.definition import parse_arguments

if TYPE_CHECKING:
    from nbplane.client import NbplaneClient
    from nbplane.deployments.models import DescribeJobExecution

job_name = click.argument(
    "name", cls=DocumentedArgument, description="The job's name on the server."
)
execution_argument = click.argument(
    "execution_id",
    metavar="EXECUTION",
    cls=DocumentedArgument,
    description="The execution's id, as `nbplane job executions NAME` lists.",
)
latest_execution_argument = click.argument(
    "execution_id",
    metavar="[EXECUTION]",
    required=False,
    cls=DocumentedArgument,
    description="The execution's id (default: the job's latest execution).",
)
team_option = click.option(
    "--team",
    help="The team that owns the job (default: your only team, as the server knows you).",
)


@contextmanager
def _remote(team: str | None) -> Iterator[tuple[NbplaneClient, str]]:
    """The logged-in client and the team to act in."""
    from nbplane.client import NbplaneClient

    with NbplaneClient.from_credentials() as client:
        yield client, checked_name(team, "team", "team") if team else only_team(client)


@click.command(
    cls=DocumentedCommand,
    help="Deploy a job directory to the server. It is uploaded as a version and that version "
    "deployed; the job is created on its first deploy. On a redeploy, options not given keep "
    "their deployed values.",
)
@job_directory
@click.option(
    "--name",
    help="The job's name on the server (default: [job] name in job.toml, else the directory's "
    "name).",
)
@click.option(
    "--team",
    help="The team that owns the job (default: [job] team in job.toml or [owner] team in "
    "config.ini, else your only team).",
)
@click.option(
    "--schedule",
    help="When to run it, a cron expression of 5 fields (or 6, seconds first), e.g. "
    "'0 6 * * *'; '' removes it (default: none on the first deploy).",
)
@click.option(
    "--timezone", help="IANA time zone the schedule is read in (default: UTC on the first deploy)."
)
@click.option(
    "--enable/--disable",
    "enabled",
    default=None,
    help="Turn the schedule on or off (default: on at the first deploy).",
)
@click.option(
    "--arguments",
    help="Arguments every execution gets unless it names its own, as a JSON object.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    help="Attempts after the first when an attempt fails, 0-10 (default: 0 on the first deploy).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0, 3600, min_open=True),
    metavar="SECONDS",
    help="Wait before the first retry; each later wait doubles, at most 1 h (default: 60).",
)
@click.option(
    "--retry-on",
    type=click.Choice(["any", "platform"]),
    help="Retry any failure, or only the platform's (could not start, process or pod lost, "
    "timed out), not a failure of the job's own code (default: any).",
)
@click.option("--reason", help="Why this deployment; kept with it for the record.")
@click.option(
    "--notify-webhook",
    "webhooks",
    multiple=True,
    metavar="URL",
    help="A webhook (e.g. a Slack incoming webhook) told of executions by a JSON POST; "
    "repeat for several. With --notify-email, replaces the deployed notifications.",
)
@click.option(
    "--notify-email",
    "emails",
    multiple=True,
    metavar="ADDRESS",
    help="An email address told of executions (the server needs NBPLANE_SMTP_HOST); repeat "
    "for several.",
)
@click.option(
    "--notify-on",
    default="failed",
    show_default=True,
    help="Which events the webhooks and addresses hear of, comma-separated: failed, "
    "completed, late.",
)
@click.option(
    "--late-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="With --notify-on late: minutes after a scheduled execution was due.",
)
@click.option("--no-notifications", is_flag=True, help="Remove the deployment's notifications.")
@output_format
def deploy(
    directory: Path,
    name: str | None,
    team: str | None,
    schedule: str | None,
    timezone: str | None,
    enabled: bool | None,
    arguments: str | None,
    retries: int | None,
    retry_delay: float | None,
    retry_on: str | None,
    reason: str | None,
    webhooks: tuple[str, ...],
    emails: tuple[str, ...],
    notify_on: str,
    late_minutes: float | None,
    no_notifications: bool,
    output: str,
) -> None:
    from nbplane.client import NbplaneClient

    given: dict[str, Any] = {
        key: value
        for key, value in {
            "schedule": schedule,
            "timezone": timezone,
            "enabled": enabled,
            "retries": retries,
            "retry_delay": retry_delay,
            "retry_on": retry_on,
            "reason": reason,
        }.items()
        if value is not None
    }
    if arguments is not None:
        given["arguments"] = parse_arguments(arguments)
    if no_notifications:
        given["notifications"] = []
    elif webhooks or emails:
        given["notifications"] = notification_targets(webhooks, emails, notify_on, late_minutes)
    with NbplaneClient.from_credentials() as client:
        deployed = deploy_directory(client, directory, team=team, name=name, changes=given)
    if output == "json":
        print_json(
            {
                "team": deployed.team,
                "name": deployed.name,
                "created": deployed.created,
                "version": deployed.version.model_dump(mode="json"),
                "deployment": deployed.deployment.model_dump(mode="json"),
            }
        )
        return
    view.print_deployed(CliConsole(), deployed)


@click.command(
    cls=DocumentedCommand,
    help="Run a deployed job on the server now. With --wait, follow it to the end.",
)
@job_name
@team_option
@click.option(
    "--arguments",
    help="Arguments for this execution as a JSON object (default: the deployment's).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Show progress and the log until the execution ends; the exit code is 0 only if it "
    "completed (1 failed or timed out, 130 cancelled).",
)
@output_format_saying(
    "table for people; json: progress and the log on stderr, the execution (final with "
    "--wait) as JSON on stdout."
)
def execute(name: str, team: str | None, arguments: str | None, wait: bool, output: str) -> None:
    from nbplane.deployments.models import ExecuteJob

    request = ExecuteJob(arguments=parse_arguments(arguments) if arguments is not None else None)
    console = CliConsole(stderr=output == "json")
    with _remote(team) as (client, team):
        execution = client.execute(team, name, request)
        console.print(
            f"execution [bold]{execution.id}[/] of {escape(team)}/{escape(name)} "
            f"version {execution.version[:12]}: {view.status(execution)}",
            highlight=False,
        )
        if not wait:
            console.print(
                f"[dim]follow it: nbplane job logs {escape(name)} {execution.id} --follow "
                f"--team {escape(team)}[/]",
                highlight=False,
            )
            if output == "json":
                print_json(execution.model_dump(mode="json"))
            return
        try:
            final = _watch(client, console, execution)
        except KeyboardInterrupt:
            console.print(
                f"stopped watching; execution {execution.id} goes on (cancel it: nbplane job "
                f"cancel {escape(name)} {execution.id} --team {escape(team)})",
                highlight=False,
            )
            raise click.exceptions.Exit(130) from None
    if output == "json":
        print_json(final.model_dump(mode="json"))
    raise click.exceptions.Exit(EXIT_CODES.get(final.status, 1))


def _watch(
    client: NbplaneClient, console: Console, execution: DescribeJobExecution
) -> DescribeJobExecution:
    """Stream the log until the execution is final, under a live status line on a terminal."""
    bar = view.progress_bar(console) if console.is_terminal else None
    with bar or nullcontext():
        report = None
        if bar is not None:
            task = bar.add_task(f"{execution.id} {execution.status}", total=None)

            def report(current: DescribeJobExecution, steps: int | None) -> None:
                description = f"{current.id} {current.status}"
                step, since = view.running_step(current, steps)
                bar.update(
                    task,
                    total=steps,
                    completed=steps_done(current),
                    description=description,
                    step=step,
                    since=since,
                )

        write = _print_now if console.file is sys.stdout else _print_err
        final = follow_execution(client, execution, write, report)
    view.print_ended(console, final)
    return final


def notification_targets(
    webhooks: tuple[str, ...], emails: tuple[str, ...], events: str, late_minutes: float | None
) -> list[dict[str, Any]]:
    """The deployment's ``notifications`` the deploy options say: each webhook a target, the
    addresses together one; the server checks them."""
    wanted: dict[str, Any] = {"events": [event.strip() for event in events.split(",") if event]}
    if late_minutes is not None:
        wanted["late_minutes"] = late_minutes
    targets = [{"url": url, **wanted} for url in webhooks]
    return targets + ([{"to": list(emails), **wanted}] if emails else [])


def _print_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


@click.command("list", cls=DocumentedCommand, help="List a team's jobs on the server.")
@team_option
@output_format
def list_jobs(team: str | None, output: str) -> None:
    with _remote(team) as (client, team):
        jobs = client.list_jobs(team)
    if output == "json":
        print_json([described.model_dump(mode="json") for described in jobs])
        return
    CliConsole().print(view.jobs_table(team, jobs))


@click.command(
    cls=DocumentedCommand,
    help="Show a job on the server. Its deployment, schedule, next run and last executions.",
)
@job_name
@team_option
@output_format
def show(name: str, team: str | None, output: str) -> None:
    with _remote(team) as (client, team):
        described = client.get_job(team, name)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    view.print_job(CliConsole(), described)


@click.command(cls=DocumentedCommand, help="List a job's executions on the server, newest first.")
@job_name
@team_option
@click.option(
    "--status",
    type=click.Choice(
        ["queued", "running", "retrying", "completed", "failed", "timed_out", "cancelled"]
    ),
    help="Only executions with this status.",
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="How many."
)
@click.option(
    "--offset", type=click.IntRange(0), default=0, show_default=True, help="How many to skip."
)
@output_format
def executions(
    name: str, team: str | None, status: str | None, limit: int, offset: int, output: str
) -> None:
    from nbplane.deployments.models import JobExecutionStatus

    wanted = JobExecutionStatus(status) if status else None
    with _remote(team) as (client, team):
        page = client.list_executions(team, name, status=wanted, limit=limit, offset=offset)
    if output == "json":
        print_json(page.model_dump(mode="json"))
        return
    shown = f"{offset + 1}-{offset + len(page.items)} of {page.total}" if page.items else "none"
    CliConsole().print(view.executions_table(page.items, f"executions of {team}/{name} ({shown})"))


@click.command(
    cls=DocumentedCommand,
    help="Print an execution's log. The job's latest execution unless one is named.",
)
@job_name
@latest_execution_argument
@team_option
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing as the log grows, until the execution ends."
)
def logs(name: str, execution_id: str | None, team: str | None, follow: bool) -> None:
    with _remote(team) as (client, team):
        if execution_id is None:
            execution_id = latest_execution(client, team, name)
        if not follow:
            text, _ = client.read_logs(team, name, execution_id)
            sys.stdout.write(text)
            return
        for chunk in client.follow_logs(team, name, execution_id):
            _print_now(chunk)


@click.command(
    cls=DocumentedCommand,
    help="Show an execution: status, reason, steps and its notifications (sent, pending a "
    "retry, failed). The job's latest execution unless one is named.",
)
@job_name
@latest_execution_argument
@team_option
@output_format
def execution(name: str, execution_id: str | None, team: str | None, output: str) -> None:
    with _remote(team) as (client, team):
        if execution_id is None:
            execution_id = latest_execution(client, team, name)
        described = client.get_execution(team, name, execution_id)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    view.print_execution(CliConsole(), described)


@click.command(cls=DocumentedCommand, help="Cancel a queued or running execution of a job.")
@job_name
@execution_argument
@team_option
@output_format
def cancel(name: str, execution_id: str, team: str | None, output: str) -> None:
    with _remote(team) as (client, team):
        execution = client.cancel_execution(team, name, execution_id)
    if output == "json":
        print_json(execution.model_dump(mode="json"))
        return
    state = "cancel requested" if not execution.status.final else "now"
    CliConsole().print(
        f"execution {execution.id} {state}: {view.status(execution)}", highlight=False
    )


def _pairs(items: tuple[str, ...], option: str) -> list[tuple[str, str | None]]:
    """``KEY=VALUE`` items; a bare ``KEY`` has no value (yet)."""
    pairs: list[tuple[str, str | None]] = []
    for item in items:
        key, equals, value = item.partition("=")
        if not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE", field=option.lstrip("-"))
        pairs.append((key.strip(), value if equals else None))
    return pairs


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@click.command(
    cls=DocumentedCommand,
    help="Show or change a job's properties on the server. Steps read them with "
    "job_input.get_property().",
)
@job_name
@team_option
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a property; VALUE is read as JSON when it parses (42, true, [1]), else as text. "
    "Repeat for several.",
)
@click.option("--unset", multiple=True, metavar="KEY", help="Remove a property; repeatable.")
@output_format
def properties(
    name: str, team: str | None, settings: tuple[str, ...], unset: tuple[str, ...], output: str
) -> None:
    values: dict[str, Any] = {}
    for key, value in _pairs(settings, "--set"):
        if value is None:
            raise ConfigError(f"--set {key}: expected KEY=VALUE", field="set")
        values[key] = _json_or_text(value)
    values.update(dict.fromkeys(unset))
    with _remote(team) as (client, team):
        if values:
            current = client.set_properties(team, name, values)
        else:
            current = client.get_properties(team, name)
    if output == "json":
        print_json(current)
        return
    CliConsole().print(view.properties_table(team, name, current))


@click.command(
    cls=DocumentedCommand,
    help="Set a job's secrets on the server, or list their names. Values are never shown.",
)
@job_name
@team_option
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Set a secret to the text VALUE; with KEY alone the value is asked for without echo, "
    "which keeps it out of the shell history. Repeatable.",
)
@click.option("--unset", multiple=True, metavar="KEY", help="Remove a secret; repeatable.")
@output_format
def secrets(
    name: str, team: str | None, settings: tuple[str, ...], unset: tuple[str, ...], output: str
) -> None:
    values: dict[str, Any] = {}
    for key, value in _pairs(settings, "--set"):
        values[key] = value if value is not None else click.prompt(key, hide_input=True, err=True)
    values.update(dict.fromkeys(unset))
    with _remote(team) as (client, team):
        if values:
            described = client.set_secrets(team, name, values)
        else:
            described = client.list_secrets(team, name)
    if output == "json":
        print_json(described.model_dump(mode="json"))
        return
    names = ", ".join(described.names) or "none"
    CliConsole().print(
        f"secrets of {escape(team)}/{escape(name)}: {escape(names)}", highlight=False
    )


@click.command(
    cls=DocumentedCommand,
    help="Download a version of a job from the server into a directory.",
)
@job_name
@team_option
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to unpack into; it must not exist or be empty (default: ./NAME).",
)
@click.option(
    "--version",
    help="Version id or a unique prefix (default: the deployed version, else the newest upload).",
)
@output_format_or_path
def download(
    name: str, team: str | None, target: Path | None, version: str | None, output: str
) -> None:
    output, target = split_output(output, target)
    target = target if target is not None else Path(name)
    with _remote(team) as (client, team):
        version, files = download_directory(client, team, name, version, target)
    if output == "json":
        print_json(
            {"team": team, "name": name, "version": version, "files": files, "to": str(target)}
        )
        return
    CliConsole().print(
        f"unpacked {files} files of {escape(team)}/{escape(name)} version "
        f"{escape(version[:12])} into {escape(str(target))}",
        highlight=False,
    )


@click.command(
    cls=DocumentedCommand,
    help="Delete a job from the server. Its versions, deployment, executions, properties and "
    "secrets go with it.",
)
@job_name
@team_option
@click.option(
    "--force", is_flag=True, help="Cancel its queued and running executions first, if any."
)
@yes_option
@output_format
def delete(name: str, team: str | None, force: bool, yes: bool, output: str) -> None:
    with _remote(team) as (client, team):
        confirm(f"delete job {team}/{name} and everything it has?", yes, "refusing to delete a job")
        try:
            client.delete_job(team, name, force=force)
        except Conflict as exc:
            if force:
                raise
            raise Conflict(
                f"{exc.message}; pass --force to cancel them and delete", **exc.fields
            ) from None
    print_result(
        output,
        f"deleted job {escape(team)}/{escape(name)}",
        {"team": team, "name": name, "deleted": True},
    )
