"""A job's past runs: listing them, showing one, rendering one as an HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path

import nbformat

from nbplane.errors import ConfigError
from nbplane.jobs.models import DescribeRun, DescribeRunStep
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


def run_page(directory: Path, run: DescribeRun, notebooks: dict[str, str]) -> str:
    """The page of ``render_run_html`` from the run's executed ``notebooks`` and the job's
    files in ``directory`` (a deployed job's: its version unpacked)."""
    from nbconvert import HTMLExporter

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
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(
        page, resources={"metadata": {"name": f"{run.job_name} run {run.number}"}}
    )
    return str(body)


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
