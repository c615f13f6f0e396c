"""A job's steps as one notebook (what VDK's ``convert-job-to-notebook`` does): each ``.py`` and
``.sql`` step becomes a step cell, in run order, after a markdown cell naming its file, so the
job can be developed in JupyterLab. The notebook goes into a new job folder (with the job's
configuration) rather than into the job itself, whose steps would then all run twice."""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nbplane.errors import ConfigError, JobDefinitionError
from nbplane.jobs.definition import Job, Step, StepKind, load_job
from nbplane.notebooks.reader import quiet_missing_cell_ids

CONFIG_FILES = ("config.ini", "job.toml", "requirements.txt")
"""Copied beside the notebook so that its folder is the same job."""


@dataclass(frozen=True)
class ConvertedJob:
    """Where the notebook was written, and which files its steps came from, in run order."""

    notebook: Path
    steps: list[str]
    copied: list[str]


def job_notebook(job: Job) -> nbformat.NotebookNode:
    """The job's steps as cells of one notebook; refuses a step that would not run the same."""
    quiet_missing_cell_ids()
    notebook: nbformat.NotebookNode = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.cells.append(
        nbformat.v4.new_markdown_cell(
            f"# {job.name}\n\nConverted from the job's step files by `nbplane job to-notebook`: "
            "code cells tagged `step` run in this order with `nbplane job run`."
        )
    )
    for number, step in enumerate(job.steps, start=1):
        where = f"`{step.file}`" + (f", cell {step.cell_number}" if step.notebook else "")
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"## Step {number}: {where}"))
        notebook.cells.append(
            nbformat.v4.new_code_cell(_cell_source(step), metadata={"tags": ["step"]})
        )
    return notebook


def _cell_source(step: Step) -> str:
    if step.kind is StepKind.SQL_FILE:
        return "%%sql\n" + (step.sql or "").strip("\n")
    if step.kind is StepKind.PYTHON_FILE:
        _check_run(step)
        return step.source.rstrip("\n") + "\n\nrun(job_input)"
    return step.source  # a notebook's step cell is one already


def _check_run(step: Step) -> None:
    """A ``.py`` step's ``run`` is called as ``run(job_input)``: it must be a plain function
    taking that one argument."""
    module = ast.parse(step.source, filename=step.file)
    found = [
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run"
    ][-1]
    if isinstance(found, ast.AsyncFunctionDef):
        raise JobDefinitionError(
            f"{step.file}: cannot convert: run is async; a notebook cell calls run(job_input) "
            "synchronously",
            file=step.file,
            line=found.lineno,
        )
    arguments = found.args
    positional = arguments.posonlyargs + arguments.args
    required = len(positional) - len(arguments.defaults)
    required_keywords = [
        name.arg
        for name, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
        if default is None
    ]
    if required > 1 or required_keywords or not (positional or arguments.vararg):
        raise JobDefinitionError(
            f"{step.file}: cannot convert: run must take exactly one argument (job_input), "
            f"line {found.lineno}",
            file=step.file,
            line=found.lineno,
        )


def convert_job(directory: Path, to: Path | None = None) -> ConvertedJob:
    """Write the job in ``directory`` as one notebook at ``to`` (default
    ``<directory>-notebook/<name>.ipynb``), with the job's configuration files beside it."""
    job = load_job(directory)
    notebook = job_notebook(job)
    target = (to or directory.parent / f"{job.name}-notebook" / f"{job.name}.ipynb").resolve()
    if target.suffix != ".ipynb":
        raise ConfigError(f"{target.name}: the notebook's name must end in .ipynb", field="to")
    if target.parent == job.directory:
        raise ConfigError(
            f"{target}: not inside the job itself, whose steps would then run twice; "
            "write the notebook into another folder",
            field="to",
        )
    if target.exists():
        raise ConfigError(f"{target} exists already; choose another --to", field="to")
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in CONFIG_FILES:
        source, copy = job.directory / name, target.parent / name
        if source.is_file() and not copy.exists():
            shutil.copyfile(source, copy)
            copied.append(name)
    nbformat.write(notebook, target)
    return ConvertedJob(notebook=target, steps=[step.name for step in job.steps], copied=copied)
