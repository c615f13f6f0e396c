"""``follow_execution`` (what ``nbplane job execute --wait`` shows) against a scripted client:
the log reaches the writer, the progress callback gets the execution and its step count, and
the execution comes back as it ended."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

from rich.console import Console

from nbplane.client import NbplaneClient
from nbplane.client.deploy import follow_execution, steps_done
from nbplane.deployments.models import DescribeJobExecution, DescribeVersion, JobExecutionStatus
from nbplane.jobs.models import StepStatus

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def execution(status: JobExecutionStatus, done: int = 0) -> DescribeJobExecution:
    step = {"name": "a", "kind": "notebook", "file": "a.ipynb", "code_hash": "c", "chain_hash": "h"}
    steps = [
        {**step, "position": n, "status": StepStatus.SUCCEEDED if n < done else StepStatus.NOT_RUN}
        for n in range(3)
    ]
    return DescribeJobExecution.model_validate(
        {
            "id": "e1",
            "job": "daily",
            "team": "sales",
            "version": "v1",
            "status": status,
            "started_by": "user:alice",
            "arguments": {},
            "executor": "local",
            "created_at": NOW,
            "steps": steps,
        }
    )


class ScriptedClient:
    """The client calls ``follow_execution`` makes, with a log that ends once the execution
    was asked for while it ran."""

    def __init__(self) -> None:
        self.reported = threading.Event()
        self.status = JobExecutionStatus.RUNNING

    def follow_logs(self, team: str, job: str, execution_id: str) -> Iterator[str]:
        yield "step 1\n"
        assert self.reported.wait(10)
        self.status = JobExecutionStatus.COMPLETED
        yield "done\n"

    def get_execution(self, team: str, job: str, execution_id: str) -> DescribeJobExecution:
        self.reported.set()
        return execution(self.status, done=3 if self.status.final else 1)

    def list_versions(self, team: str, job: str) -> list[DescribeVersion]:
        return [
            DescribeVersion(
                id="v1", job=job, team=team, size=1, steps=["a", "b", "c"], created_at=NOW
            )
        ]


def test_follow_writes_the_log_reports_progress_and_returns_the_end() -> None:
    client = ScriptedClient()
    written: list[str] = []
    reports: list[tuple[int, int | None]] = []

    def progress(current: DescribeJobExecution, steps: int | None) -> None:
        reports.append((steps_done(current), steps))

    final = follow_execution(
        cast(NbplaneClient, client),
        execution(JobExecutionStatus.QUEUED),
        written.append,
        progress,
        every=0.01,
    )
    assert written == ["step 1\n", "done\n"]
    assert reports[0] == (1, 3)
    assert final.status == JobExecutionStatus.COMPLETED and steps_done(final) == 3


def test_follow_without_progress_asks_nothing_else() -> None:
    client: Any = ScriptedClient()
    client.reported.set()
    written: list[str] = []
    final = follow_execution(client, execution(JobExecutionStatus.QUEUED), written.append)
    assert "".join(written) == "step 1\ndone\n"
    assert final.status == JobExecutionStatus.COMPLETED


def test_execute_wait_shows_a_status_line_on_a_terminal() -> None:
    from nbplane.cli.deployments import _watch

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    client: Any = ScriptedClient()
    final = _watch(client, console, execution(JobExecutionStatus.QUEUED))
    assert final.status == JobExecutionStatus.COMPLETED
    shown = screen.getvalue()
    assert "1/3" in shown  # steps done of the version's steps, on the status line
    assert "execution e1 \x1b[32mcompleted" in shown
