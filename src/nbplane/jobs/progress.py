"""Live progress of a job run in the terminal: one line per step, output as it happens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from nbplane.jobs.definition import Job, Step
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.jobs.resume import RunPlan
from nbplane.jobs.runner import Reporter

if TYPE_CHECKING:
    from rich.table import Table

STATUS_STYLE = {
    StepStatus.SUCCEEDED: ("✓", "green"),
    StepStatus.FAILED: ("✗", "red"),
    StepStatus.SKIPPED: ("↷", "cyan"),
    StepStatus.NOT_RUN: ("·", "dim"),
}


def describe_source(file: str, cell_number: int | None) -> str:
    return f"{file} cell {cell_number}" if cell_number is not None else file


class ConsoleReporter(Reporter):
    """Draws a run on a rich console; a spinner only when the console is a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self._pending: dict[str, str] = {}
        self._status: Any = None
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
        if self.console.is_terminal:
            self._status = self.console.status(f"running {self._label(step)}")
            self._status.start()
        else:
            self.console.print(f"▶ {self._label(step)}", highlight=False)

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
        if self._status is not None:
            self._status.stop()
            self._status = None
        mark, style = STATUS_STYLE[record.status]
        self.console.print(
            f"[{style}]{mark} {self._label(step)}[/] [dim]{record.duration or 0:.2f}s[/]",
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
        self.console.print(run_table(run))
        style = "green" if run.status == RunStatus.SUCCEEDED else "red"
        self.console.print(
            f"[bold {style}]run {run.number} of {escape(run.job_name)} {run.status}[/] "
            f"in {run.duration or 0:.2f}s",
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


def run_table(run: DescribeRun) -> Table:
    """The summary of a run's steps (rich's tables are imported once the steps are done)."""
    from rich.table import Table

    table = Table(title=f"run {run.number} of {run.job_name}", title_justify="left")
    for column in ("#", "step", "status", "duration", "note"):
        table.add_column(column, no_wrap=column != "note")
    for step in run.steps:
        mark, style = STATUS_STYLE[step.status]
        error = step.error or {}
        note = error.get("summary") or error.get("message") or step.reason or ""
        if error.get("line"):
            note = f"line {error['line']}: {note}"
        duration = f"{step.duration:.2f}s" if step.duration is not None else ""
        table.add_row(
            str(step.position + 1),
            describe_source(step.file, step.cell_number),
            Text(f"{mark} {step.status}", style=style),
            duration,
            note,
        )
    return table
