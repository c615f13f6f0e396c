"""Create a new job directory, and pack a job into a deployable archive."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import nbformat

from nbplane.errors import ConfigError, JobDefinitionError
from nbplane.jobs.definition import load_job
from nbplane.notebooks.reader import is_step_cell, quiet_missing_cell_ids

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
EXCLUDED_PARTS = {".nbplane", ".ipynb_checkpoints", "__pycache__", ".git"}


def create_job(name: str, *, team: str | None, parent: Path, notebook: Path | None = None) -> Path:
    """A job folder with ``config.ini`` and an example notebook of step cells, or a copy of
    ``notebook`` (every code cell a step when none is tagged yet, so that it runs as is)."""
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"job name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit)",
            field="name",
        )
    directory = parent / name
    if directory.exists():
        raise ConfigError(f"{directory} already exists", field="name")
    copied = _as_job_notebook(notebook) if notebook is not None else None
    directory.mkdir(parents=True)
    (directory / "config.ini").write_text(
        f"; VDK-compatible job configuration\n[owner]\nteam = {team or 'default'}\n",
        encoding="utf-8",
    )
    if notebook is not None and copied is not None:
        nbformat.write(copied, directory / notebook.name)
        return directory
    example = nbformat.v4.new_notebook()
    step = {"tags": ["step"]}
    example.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {name}\n\nCode cells tagged `step` run in order with `nbplane job run`; "
            "other cells are for exploring and never run in the job. `job_input` is "
            "defined in every step."
        ),
        nbformat.v4.new_code_cell(
            "%%sql\nCREATE TABLE IF NOT EXISTS greetings (who TEXT, said_at TEXT);\n"
            "DELETE FROM greetings",
            metadata=step,
        ),
        nbformat.v4.new_code_cell(
            'who = job_input.get_arguments().get("who", "world")\n'
            "job_input.send_object_for_ingestion(\n"
            '    payload={"who": who, "said_at": str(job_input.get_execution_properties()'
            '["pa__job_start_unixtime"])},\n'
            '    destination_table="greetings",\n)\nprint(f"hello, {who}")',
            metadata=step,
        ),
        nbformat.v4.new_code_cell("%%sql\nSELECT who, said_at FROM greetings", metadata=step),
        nbformat.v4.new_code_cell(
            "# not tagged: explore freely, this never runs in the job\n"
            "job_input.execute_query('SELECT count(*) FROM greetings')"
        ),
    ]
    nbformat.write(example, directory / "10_hello.ipynb")
    return directory


def _as_job_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook to copy into a new job; its code cells all become steps when none is."""
    quiet_missing_cell_ids()
    if path.suffix != ".ipynb" or not path.is_file():
        raise ConfigError(f"{path.name}: not a notebook (.ipynb) file", field="notebook")
    try:
        notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise JobDefinitionError(
            f"{path.name}: cannot read the notebook: {exc}", file=path.name, field="notebook"
        ) from None
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if not code:
        raise ConfigError(f"{path.name}: no code cell to run as a step", field="notebook")
    if not any(is_step_cell(cell) for cell in code):
        for cell in code:
            cell.metadata.setdefault("tags", []).append("step")
    for cell in code:
        cell.outputs, cell.execution_count = [], None
    return notebook


def export_job(directory: Path, output: Path) -> list[str]:
    """Zip the job's files with notebook outputs cleared; refuses a directory that is no job."""
    load_job(directory)
    root = directory.resolve()
    output = output.resolve()
    if not output.parent.is_dir():
        raise ConfigError(
            f"cannot write {output}: {output.parent} is not a directory", field="output"
        )
    written = []
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if (
                path.is_dir()
                or path == output
                or EXCLUDED_PARTS.intersection(relative.parts)
                or path.suffix == ".pyc"
            ):
                continue
            content = _cleared(path).encode() if path.suffix == ".ipynb" else path.read_bytes()
            # A fixed time and mode: the same job always zips to the same bytes, so uploading
            # an unchanged job again is the same version.
            member = zipfile.ZipInfo(str(relative), date_time=(1980, 1, 1, 0, 0, 0))
            member.external_attr = 0o644 << 16
            archive.writestr(member, content, compress_type=zipfile.ZIP_DEFLATED)
            written.append(str(relative))
    return written


def _cleared(path: Path) -> str:
    """The notebook without outputs; fully validated, as it is about to leave this machine."""
    quiet_missing_cell_ids()
    notebook = nbformat.read(path, as_version=4)
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(document)"
        raise JobDefinitionError(
            f"{path.name}: invalid notebook at {where}: {exc.message}", file=path.name, field=where
        ) from None
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return str(nbformat.writes(notebook))
