"""A job's past runs: listing them, showing one, rendering one as an HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path

import nbformat

from nbplane.errors import ConfigError
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.notebooks.pages import Failure, notebook_page
from nbplane.notebooks.reader import quiet_missing_cell_ids
from nbplane.settings import get_settings
from nbplane.store import Store, open_store


@contextmanager
def _store() -> Iterator[Store]:
    store = open_store(get_settings().resolved_store_url)
    try:
        yield store
    finally:
        store.close()


def list_runs(directory: Path, limit: int = 20) -> list[DescribeRun]:
    with _store() as store:
        return store.list_runs(str(directory.resolve()), limit=limit)


def get_run(directory: Path, number: int) -> DescribeRun:
    """A run of the job by its number among the job's runs."""
    with _store() as store:
        record = store.run_by_number(str(directory.resolve()), number)
    if record is None:
        raise ConfigError(
            f"no run {number} of the job in {directory}; `nbplane job runs {directory}` lists them",
            field="number",
        )
    return record


def render_run_html(directory: Path, run: DescribeRun) -> str:
    """One page: the run's summary, then every notebook and step file with its outputs."""
    with _store() as store:
        notebooks = store.run_notebooks(run.id)
    return run_page(directory, run, notebooks)


def run_page(
    directory: Path,
    run: DescribeRun,
    notebooks: dict[str, str],
    failure: Failure | None = None,
) -> str:
    """The page of ``render_run_html`` from the run's executed ``notebooks`` and the job's
    files in ``directory`` (a deployed job's: its version unpacked). It opens with ``failure``,
    by default what :func:`run_failure` finds in the run."""
    quiet_missing_cell_ids()

    page = nbformat.v4.new_notebook()
    page.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    page.cells.append(nbformat.v4.new_markdown_cell(_summary_markdown(run)))
    shown: set[str] = set()
    for step in run.steps:
        if step.file in shown:
            continue
        shown.add(step.file)
        if step.file in notebooks:
            page.cells.append(nbformat.v4.new_markdown_cell(f"## {step.file}"))
            executed = nbformat.reads(notebooks[step.file], as_version=4)
            page.cells.extend(_annotated(cell) for cell in executed.cells)
        else:
            page.cells.append(
                nbformat.v4.new_markdown_cell(f"## {step.file}\n\n{_status_line(step)}")
            )
            cell = nbformat.v4.new_code_cell(_file_source(directory, step))
            cell.outputs = [nbformat.from_dict(o) for o in step.outputs]
            cell.execution_count = step.position + 1 if step.outputs else None
            page.cells.append(cell)
    return notebook_page(page, failure or run_failure(run), f"{run.job_name} run {run.number}")


def run_failure(run: DescribeRun) -> Failure | None:
    """What failed in a run and why: its first failed step (where, as the step's name and the
    cell's number as JupyterLab shows it, and the error), else the run's own error."""
    if run.status == RunStatus.SUCCEEDED:
        return None
    title = "Cancelled" if run.status == RunStatus.CANCELLED else "Failed"
    for step in run.steps:
        if step.status != StepStatus.FAILED:
            continue
        error = step.error or {}
        where = f"step {step.position + 1} ({step.name})"
        if step.cell_number is not None:
            where += f", {step.file} cell {step.cell_number}"
        if error.get("raised_in"):
            where += f"; raised in {error['raised_in']}"
        if error.get("line"):
            where += f", line {error['line']}"
        text = error.get("summary") or error.get("message")
        return Failure(title, where, text, cell_id=step.cell_id)
    if run.status == RunStatus.RUNNING:  # or its process ended without a word
        return None
    message = (run.error or {}).get("message")
    return Failure(title, error=str(message) if message else None)


def _annotated(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Put a step's status as a source comment so the page shows it next to the cell."""
    info = cell.get("metadata", {}).get("nbplane")
    if cell.cell_type != "code" or not info:
        return cell
    duration = f" in {info['duration']:.2f}s" if info.get("duration") is not None else ""
    reason = f": {info['reason']}" if info.get("reason") else ""
    cell.source = (
        f"# nbplane step {info['step']}: {info['status']}{duration}{reason}\n" + cell.source
    )
    return cell


def _status_line(step: DescribeRunStep) -> str:
    duration = f" in {step.duration:.2f}s" if step.duration is not None else ""
    return f"step {step.position + 1}: **{step.status}**{duration} {escape(step.reason or '')}"


def _file_source(directory: Path, step: DescribeRunStep) -> str:
    try:
        return (directory / step.file).read_text(encoding="utf-8")
    except OSError:
        return f"# {step.file} is no longer in {directory}"


def _summary_markdown(run: DescribeRun) -> str:
    duration = f"{run.duration:.2f}s" if run.duration is not None else "still running"
    lines = [
        f"# {escape(run.job_name)} · run {run.number} · {run.status}",
        "",
        f"Started {run.started_at:%Y-%m-%d %H:%M:%S %Z}, took {duration}. Database "
        f"`{run.db_url}`. Arguments `{json.dumps(run.arguments)}`. Run id {run.id}.",
        "",
    ]
    lines += [f"- ↷ {escape(note)}" for note in run.plan]
    lines += ["", "| # | step | status | duration | note |", "|---|---|---|---|---|"]
    for step in run.steps:
        note = (step.error or {}).get("message") or step.reason or ""
        duration = f"{step.duration:.2f}s" if step.duration is not None else ""
        lines.append(
            f"| {step.position + 1} | {escape(step.name)} | {step.status} | "
            f"{duration} | {escape(note).replace('|', '&#124;')} |"
        )
    if run.error and not any(step.error for step in run.steps):
        lines += ["", f"**{escape(str(run.error.get('message', '')))}**"]
    return "\n".join(lines)
