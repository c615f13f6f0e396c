"""How the remote ``nbplane job`` commands show jobs, deployments and executions on a terminal:
rich text and tables, times in UTC (and a schedule's own time zone where it reads in one)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

    from nbplane.apis.models import DescribeExecution
    from nbplane.client.deploy import Deployed
    from nbplane.deployments.models import (
        DescribeDeployment,
        DescribeJob,
        DescribeJobExecution,
        DescribeJobExecutionAttempt,
    )


def when(moment: datetime | None, zone: str = " UTC") -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}{zone}" if moment is not None else ""


def next_run(deployment: DescribeDeployment) -> str:
    """In the schedule's own time zone too, as that is how its cron expression reads."""
    from zoneinfo import ZoneInfo

    moment = deployment.next_run_at
    if moment is None or deployment.timezone == "UTC":
        return when(moment)
    local = moment.astimezone(ZoneInfo(deployment.timezone))
    return f"{when(local, ' ' + deployment.timezone)} ({when(moment)})"


def took(execution: DescribeJobExecution | DescribeJobExecutionAttempt | DescribeExecution) -> str:
    if execution.started_at is None or execution.finished_at is None:
        return ""
    return f"{(execution.finished_at - execution.started_at).total_seconds():.1f}s"


def status(
    execution: DescribeJobExecution | DescribeJobExecutionAttempt | DescribeExecution,
) -> str:
    style = {"completed": "green", "queued": "dim", "running": "cyan", "retrying": "yellow"}
    return f"[{style.get(execution.status, 'red')}]{execution.status}[/]"


def print_deployed(console: Console, deployed: Deployed) -> None:
    team, name = escape(deployed.team), escape(deployed.name)
    version, deployment = deployed.version, deployed.deployment
    if deployed.created:
        console.print(f"created job {team}/{name}", highlight=False)
    console.print(
        f"deployed {team}/{name} version [bold]{version.id[:12]}[/] "
        f"({len(version.steps)} steps, {version.size} bytes)",
        highlight=False,
    )
    if deployment.schedule is None:
        console.print(
            f"no schedule; run it with [bold]nbplane job execute {name} --team {team}[/]",
            highlight=False,
        )
    elif not deployment.enabled:
        console.print(
            f"schedule {escape(deployment.schedule)} ({escape(deployment.timezone)}) is disabled",
            highlight=False,
        )
    else:
        console.print(
            f"schedule {escape(deployment.schedule)} ({escape(deployment.timezone)}); "
            f"next run {next_run(deployment)}",
            highlight=False,
        )


def progress_bar(console: Console) -> Progress:
    """The live status line of ``job execute --wait``: status, steps done, the running step
    with its time (the task's ``step`` and ``since`` fields, from :func:`running_step`), the
    whole wait's time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    from nbplane.jobs.progress import duration_text

    class RunningStepColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            step, since = task.fields.get("step"), task.fields.get("since")
            if step is None or since is None:
                return Text("")
            elapsed = max((datetime.now(UTC) - since).total_seconds(), 0.0)
            return Text(f"step {step} running {duration_text(elapsed, 0)}", style="cyan")

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        RunningStepColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def running_step(
    execution: DescribeJobExecution, steps: int | None
) -> tuple[int, datetime] | tuple[None, None]:
    """The number of the step running now and since when, by the server's clock (the end of
    the step before it, else the attempt's start), so a watch begun mid-step counts it all."""
    from nbplane.client.deploy import steps_done

    done = steps_done(execution)
    since = execution.attempts[-1].started_at if execution.attempts else execution.started_at
    if execution.status != "running" or since is None or (steps is not None and done >= steps):
        return None, None
    for step in execution.steps:
        if step.started_at is not None and step.duration is not None:
            since = max(since, step.started_at + timedelta(seconds=step.duration))
    return done + 1, since


def print_ended(console: Console, final: DescribeJobExecution) -> None:
    reason = f": {escape(final.reason)}" if final.reason and final.reason != final.status else ""
    if len(final.attempts) > 1:
        console.print(attempts_table(final))
    console.print(
        f"execution {final.id} {status(final)}{reason} {took(final)}".rstrip(), highlight=False
    )


def attempts_table(execution: DescribeJobExecution) -> Table:
    """Each attempt of an execution that was retried: how it ended, and whose failure it was."""
    table = Table(title=f"attempts of {execution.id}, times in UTC", title_justify="left")
    for column in ("attempt", "status", "failure", "started", "reason"):
        table.add_column(column)
    for attempt in execution.attempts:
        table.add_row(
            str(attempt.number),
            f"{status(attempt)} {took(attempt)}".rstrip(),
            attempt.failure or "",
            when(attempt.started_at, ""),
            escape(attempt.reason or ""),
        )
    return table


def jobs_table(team: str, jobs: list[DescribeJob]) -> Table:
    table = Table(title=f"jobs of team {team}, times in UTC", title_justify="left")
    for column in ("job", "version", "schedule", "next run", "last execution"):
        table.add_column(column)
    for described in jobs:
        deployment = described.deployment
        schedule = ""
        if deployment is not None and deployment.schedule:
            schedule = deployment.schedule + ("" if deployment.enabled else " (disabled)")
        last = described.last_executions[0] if described.last_executions else None
        table.add_row(
            described.name,
            deployment.version[:12] if deployment else "not deployed",
            schedule,
            when(deployment.next_run_at, "") if deployment else "",
            f"{status(last)} {when(last.created_at, '')}" if last else "",
        )
    return table


def print_job(console: Console, described: DescribeJob) -> None:
    by = f" by {escape(described.created_by)}" if described.created_by else ""
    console.print(
        f"[bold]{escape(described.team)}/{escape(described.name)}[/]"
        + (f" · {escape(described.description)}" if described.description else "")
        + f" · created {when(described.created_at)}{by}",
        highlight=False,
    )
    deployment = described.deployment
    if deployment is None:
        console.print("not deployed; deploy it with `nbplane job deploy DIR`", highlight=False)
    else:
        console.print(deployment_table(deployment))
    console.print(executions_table(described.last_executions, "last executions"))


def deployment_table(deployment: DescribeDeployment) -> Table:
    schedule = (
        f"{deployment.schedule} ({deployment.timezone})"
        + ("" if deployment.enabled else ", disabled")
        if deployment.schedule
        else "none"
    )
    rows = {
        "version": deployment.version,
        "deployed": when(deployment.deployed_at)
        + (f" by {deployment.deployed_by}" if deployment.deployed_by else ""),
        "reason": deployment.reason or "",
        "schedule": schedule,
        "next run": next_run(deployment) or "-",
        "arguments": json.dumps(deployment.arguments),
        "executor": deployment.executor,
        "timeout": f"{deployment.timeout:g}s",
        "notifications": "; ".join(
            f"{target.url or ', '.join(target.to or [])} on {', '.join(target.events)}"
            + (f" ({target.late_minutes:g} min)" if target.late_minutes else "")
            for target in deployment.notifications
        ),
        "retries": retry_policy(deployment),
    }
    table = Table(title="deployment", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        if value:
            table.add_row(key, escape(value))
    return table


def retry_policy(deployment: DescribeDeployment) -> str:
    if not deployment.retries:
        return ""
    failures = "any failure" if deployment.retry_on == "any" else "platform failures"
    return (
        f"{deployment.retries} on {failures}, the first after {deployment.retry_delay:g}s, "
        "each wait doubling (at most 1 h)"
    )


def executions_table(executions: list[DescribeJobExecution], title: str) -> Table:
    reasons = any(execution.reason for execution in executions)
    retried = any(len(execution.attempts) > 1 for execution in executions)
    table = Table(title=f"{title}, times in UTC", title_justify="left")
    table.add_column("execution", no_wrap=True, min_width=36)  # whole: commands take it
    table.add_column("status", min_width=9)
    table.add_column("created", min_width=10)  # the date, at least, on a narrow terminal
    table.add_column("started by")
    if retried:
        table.add_column("attempts")
    if reasons:
        table.add_column("reason")
    for execution in executions:
        cells = [
            execution.id,
            f"{status(execution)} {took(execution)}".rstrip(),
            when(execution.created_at, ""),
            execution.started_by,
            *([str(len(execution.attempts))] if retried else []),
        ]
        table.add_row(*cells, *([escape(execution.reason or "")] if reasons else []))
    return table


def print_execution(console: Console, execution: DescribeJobExecution) -> None:
    """One execution: its line, its steps as ``job run`` shows them, its notifications."""
    from nbplane.jobs.progress import describe_source

    print_ended(console, execution)
    console.print(
        f"job {escape(execution.team)}/{escape(execution.job)} · version "
        f"{execution.version[:12]} · started by {escape(execution.started_by)} · created "
        f"{when(execution.created_at)}",
        highlight=False,
    )
    for step in execution.steps:
        error = step.error or {}
        line = f", line {error['line']}" if error.get("line") else ""
        note = error.get("summary") or step.reason or ""
        console.print(
            f"  step {step.position + 1} {escape(describe_source(step.file, step.cell_number))}"
            f"{line}: {step.status}" + (f": {escape(str(note))}" if note else ""),
            highlight=False,
        )
    if execution.notifications:
        console.print(notifications_table(execution))


def notifications_table(execution: DescribeJobExecution) -> Table:
    table = Table(title="notifications, times in UTC", title_justify="left")
    for column in ("to", "event", "status", "attempts", "last error / sent"):
        table.add_column(column)
    for sent in execution.notifications:
        after = when(sent.sent_at) if sent.sent_at else escape(sent.last_error or "")
        if sent.status == "pending" and sent.next_attempt_at:
            after = f"{after} (next attempt {when(sent.next_attempt_at, '')})".lstrip()
        table.add_row(escape(sent.address), sent.event, sent.status, str(sent.attempts), after)
    return table


def properties_table(team: str, name: str, current: dict[str, Any]) -> Table:
    table = Table(title=f"properties of {team}/{name}", title_justify="left")
    table.add_column("key")
    table.add_column("value (JSON)")
    for key, value in sorted(current.items()):
        table.add_row(escape(key), escape(json.dumps(value)))
    return table
