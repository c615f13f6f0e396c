"""``job run``'s progress: the running step's time, live on a terminal and as appended lines
when piped, and each finished step's duration."""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime

import pytest
from rich.console import Console

from nbplane.jobs.definition import Step, StepKind
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.jobs.progress import ConsoleReporter, _RunningLine, duration_text

STEP = Step(index=0, kind=StepKind.PYTHON_FILE, file="10_load.py", source="")


@pytest.mark.parametrize(
    ("seconds", "decimals", "text"),
    [
        (0.25, 2, "0.25s"),
        (42.9, 0, "42s"),
        (59.999, 2, "60.00s"),
        (187, 2, "3m 07s"),
        (3729, 0, "1h 02m 09s"),
    ],
)
def test_durations_read_as_people_write_them(seconds: float, decimals: int, text: str) -> None:
    assert duration_text(seconds, decimals) == text


def finished(duration: float) -> DescribeRunStep:
    return DescribeRunStep(
        position=0,
        name="10_load.py",
        kind=StepKind.PYTHON_FILE,
        file="10_load.py",
        status=StepStatus.SUCCEEDED,
        duration=duration,
        code_hash="h",
        chain_hash="h",
    )


def reporter(terminal: bool, every: float = 30.0) -> tuple[ConsoleReporter, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200, no_color=True)
    shown = ConsoleReporter(console, still_running_every=every)
    shown.total, shown._depth = 1, 1
    return shown, out


def test_piped_a_long_step_says_it_still_runs_and_then_how_long_it_took() -> None:
    shown, out = reporter(terminal=False, every=0.2)
    shown.step_started(STEP)
    time.sleep(0.75)
    shown.step_finished(STEP, finished(0.75))
    shown.run_finished(
        DescribeRun(
            id=1,
            number=1,
            job_name="etl",
            job_team=None,
            job_dir="/etl",
            status=RunStatus.SUCCEEDED,
            started_at=datetime.now(UTC),
            db_url="sqlite://",
            steps=[finished(0.75)],
        )
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "▶ 1/1 10_load.py"
    still = [line for line in lines if "still running" in line]
    assert 2 <= len(still) <= 4, lines
    assert all(re.fullmatch(r"… 1/1 10_load\.py still running, 0s", line) for line in still)
    assert lines[len(still) + 1] == "✓ 1/1 10_load.py 0.75s"
    assert "\x1b" not in out.getvalue(), "no live redraw when piped"


def test_on_a_terminal_the_running_line_counts_the_steps_time() -> None:
    shown, out = reporter(terminal=True)
    shown.step_started(STEP)
    try:
        step, label, _ = shown.running[-1]
        shown.running[-1] = (step, label, time.monotonic() - 65)
        assert _RunningLine(shown).__rich__().plain == "running 1/1 10_load.py 1m 05s"
    finally:
        shown.step_finished(STEP, finished(65.2))
    assert shown.running == [] and shown._status is None
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "✓ 1/1 10_load.py 1m 05s\n" in drawn


def test_job_execute_wait_shows_the_running_step_and_its_time_by_the_servers_clock() -> None:
    from datetime import timedelta

    from nbplane.cli._deployments_view import progress_bar, running_step
    from nbplane.deployments.models import JobExecutionStatus
    from tests.unit.test_follow_execution import execution

    started = datetime.now(UTC) - timedelta(seconds=100)
    current = execution(JobExecutionStatus.RUNNING, done=1).model_copy(
        update={"started_at": started}
    )
    current.steps[0].started_at, current.steps[0].duration = started, 25.0
    step, since = running_step(current, 3)
    assert (step, since) == (2, started + timedelta(seconds=25))
    assert running_step(execution(JobExecutionStatus.COMPLETED, done=3), 3) == (None, None)
    assert running_step(current, 1) == (None, None), "every step is done: none runs"

    bar = progress_bar(Console(file=io.StringIO(), force_terminal=True, width=120))
    task = bar.add_task("e1 running", total=3)
    bar.update(task, completed=1, step=step, since=since)
    rendered = [column.render(bar.tasks[0]) for column in bar.columns]
    texts = [str(getattr(shown, "plain", "")) for shown in rendered]
    assert any(re.fullmatch(r"step 2 running 1m 1[5-9]s", text) for text in texts), texts
