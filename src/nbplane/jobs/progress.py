"""Live progress of a job run in the terminal: one line per step, output as it happens.

On a terminal the running step's line counts its time live; piped (a CI log, ``job logs``),
lines are only ever appended: the step's start, a "still running" line every
:data:`STILL_RUNNING_EVERY` seconds of a long step, and its end with its duration.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from nbplane.jobs.definition import Job, Step
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.jobs.resume import RunPlan
from nbplane.jobs.runner import Reporter

if TYPE_CHECKING:
    from rich.status import Status
    from rich.table import Table

STILL_RUNNING_EVERY = 30.0
"""Seconds between the "still running" lines of a long step, when the output is not a terminal."""

STATUS_STYLE = {
    StepStatus.SUCCEEDED: ("✓", "green"),
    StepStatus.FAILED: ("✗", "red"),
    StepStatus.SKIPPED: ("↷", "cyan"),
    StepStatus.NOT_RUN: ("·", "dim"),
}


def describe_source(file: str, cell_number: int | None) -> str:
    return f"{file} cell {cell_number}" if cell_number is not None else file


def duration_text(seconds: float, decimals: int = 2) -> str:
    """``0.25s``, ``42s`` (``decimals=0``: whole seconds, as a clock counts), ``3m 07s``,
    ``1h 02m 09s``."""
    if decimals == 0:
        seconds = int(seconds)
    if seconds < 60:
        return f"{seconds:.{decimals}f}s"
    minutes, whole = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {whole:02d}s" if hours else f"{minutes}m {whole:02d}s"


class _RunningLine:
    """The live line of the running step: rich renders it at each refresh, so its time moves."""

    def __init__(self, reporter: ConsoleReporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Text:
        if not self.reporter.running:
            return Text("")
        _, label, started = self.reporter.running[-1]
        elapsed = duration_text(time.monotonic() - started, 0)
        return Text.from_markup(f"running {label} [dim]{elapsed}[/]")


class ConsoleReporter(Reporter):
    """Draws a run on a rich console: on a terminal a live line with the running step's time,
    else plain lines (see the module's docstring)."""

    def __init__(self, console: Console, still_running_every: float = STILL_RUNNING_EVERY) -> None:
        self.console = console
        self.total = 0
        self.running: list[tuple[Step, str, float]] = []
        """Each running step, its label and start (monotonic); innermost (a template's) last."""
        self.still_running_every = still_running_every
        self._pending: dict[str, str] = {}
        self._status: Status | None = None
        self._ticker: threading.Thread | None = None
        self._done = threading.Event()
        self._depth = 0

    def run_started(self, run: DescribeRun, job: Job, plan: RunPlan) -> None:
        self._depth += 1
        self.total = len(job.steps)
        label = "Template" if self._depth > 1 else "Job"
        self.console.print(
            f"[bold]{label} {escape(job.name)}[/] · run {run.number} · {self.total} steps · "
            f"database {escape(run.db_url)}",
            highlight=False,
        )
        for note in plan.notes:
            self.console.print(f"[cyan]↷ {escape(note)}[/]", highlight=False)

    def step_skipped(self, step: Step, record: DescribeRunStep) -> None:
        mark, style = STATUS_STYLE[record.status]
        self.console.print(
            f"[{style}]{mark} {self._label(step)}  {record.status}: "
            f"{escape(record.reason or '')}[/]",
            highlight=False,
        )

    def step_started(self, step: Step) -> None:
        self.running.append((step, self._label(step), time.monotonic()))
        if self.console.is_terminal:
            if self._status is None:
                self._status = self.console.status(_RunningLine(self))
                self._status.start()
            return
        self.console.print(f"▶ {self._label(step)}", highlight=False)
        if self._ticker is None and self.still_running_every > 0:
            self._done.clear()
            self._ticker = threading.Thread(target=self._tick, name="nbplane-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Piped: say which step still runs, and for how long, every so often."""
        told: Step | None = None
        last = 0.0
        while not self._done.wait(min(self.still_running_every, 1.0)):
            running = self.running  # replaced, never changed, by the run: read it once
            if not running:
                continue
            (step, label, started), now = running[-1], time.monotonic()
            if step is not told:
                told, last = step, started
            if now - last >= self.still_running_every:
                last = now
                elapsed = duration_text(now - started, 0)
                self.console.print(f"… {label} still running, {elapsed}", highlight=False)

    def step_output(self, step: Step, stream: str, text: str) -> None:
        buffered = self._pending.get(stream, "") + text
        *lines, self._pending[stream] = buffered.split("\n")
        for line in lines:
            self._print_output(stream, line)

    def step_finished(self, step: Step, record: DescribeRunStep) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self._print_output(stream, rest)
        self._pending.clear()
        self.running = [entry for entry in self.running if entry[0] is not step]
        if self._status is not None and not self.running:
            self._status.stop()
            self._status = None
        mark, style = STATUS_STYLE[record.status]
        self.console.print(
            f"[{style}]{mark} {self._label(step)}[/] [dim]{duration_text(record.duration or 0)}[/]",
            highlight=False,
        )
        if record.error:
            self.console.print(f"[bold red]{escape(record.error['message'])}[/]", highlight=False)
            if trace := record.error.get("traceback"):
                self.console.print(Text(trace.rstrip(), style="red"))

    def run_finished(self, run: DescribeRun) -> None:
        self._depth -= 1
        if self._depth:
            return
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self.console.print(run_table(run, framed=self.console.is_terminal))
        style = "green" if run.status == RunStatus.SUCCEEDED else "red"
        self.console.print(
            f"[bold {style}]run {run.number} of {escape(run.job_name)} {run.status}[/] "
            f"in {duration_text(run.duration or 0)}",
            highlight=False,
        )
        if (
            run.status != RunStatus.SUCCEEDED
            and run.error
            and not any(s.status == StepStatus.FAILED for s in run.steps)
        ):
            self.console.print(f"[red]{escape(run.error.get('message', ''))}[/]", highlight=False)

    def _label(self, step: Step) -> str:
        return (
            f"{step.index + 1}/{self.total} "
            f"[bold]{escape(describe_source(step.file, step.cell_number))}[/]"
        )

    def _print_output(self, stream: str, line: str) -> None:
        """A step's output line under its step: a box-drawn gutter on a terminal, an ASCII one
        in a log (CI, JupyterLab's run view), where box drawing is noise."""
        style = "yellow" if stream == "stderr" else ""
        margin = "  │ " if self.console.is_terminal else "  | "
        self.console.print(Text(margin, style="dim") + Text(line, style=style))


def run_table(run: DescribeRun, *, framed: bool = True) -> Table:
    """The summary of a run's steps (rich's tables are imported once the steps are done);
    unframed, it is aligned columns of plain text, for logs."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"run {run.number} of {run.job_name}",
        title_justify="left",
        box=box.HEAVY_HEAD if framed else None,
    )
    for column in ("#", "step", "status", "duration", "note"):
        table.add_column(column, no_wrap=column != "note")
    for step in run.steps:
        mark, style = STATUS_STYLE[step.status]
        error = step.error or {}
        note = error.get("summary") or error.get("message") or step.reason or ""
        if error.get("line"):
            note = f"line {error['line']}: {note}"
        duration = duration_text(step.duration) if step.duration is not None else ""
        table.add_row(
            str(step.position + 1),
            describe_source(step.file, step.cell_number),
            Text(f"{mark} {step.status}", style=style),
            duration,
            note,
        )
    return table
