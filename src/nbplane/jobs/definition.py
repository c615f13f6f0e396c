"""A job directory turned into its ordered steps, and the job's own configuration."""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from nbplane.errors import ConfigError, JobDefinitionError
from nbplane.notebooks.reader import (
    NotebookFile,
    cell_source,
    is_step_cell,
    read_notebook,
    split_sql_cell,
)

STEP_SUFFIXES = (".ipynb", ".py", ".sql")


class StepKind(StrEnum):
    PYTHON_CELL = "python-cell"
    SQL_CELL = "sql-cell"
    PYTHON_FILE = "python-file"
    SQL_FILE = "sql-file"


@dataclass(frozen=True)
class Step:
    """One unit the runner executes: a tagged cell, a ``.py`` file or a ``.sql`` file."""

    index: int
    kind: StepKind
    file: str
    source: str
    cell_number: int | None = None
    cell_id: str | None = None
    sql: str | None = None
    sql_line_offset: int = 0

    @property
    def name(self) -> str:
        return f"{self.file}#{self.cell_number}" if self.cell_number is not None else self.file

    @property
    def notebook(self) -> str | None:
        return self.file if self.cell_number is not None else None

    @property
    def is_sql(self) -> bool:
        return self.kind in (StepKind.SQL_CELL, StepKind.SQL_FILE)

    @property
    def code_hash(self) -> str:
        identity = f"{self.kind}\0{self.name}\0{self.source}"
        return hashlib.sha256(identity.encode()).hexdigest()

    def location(self) -> dict[str, Any]:
        """Where the step lives, as error fields."""
        return {
            "step": self.name,
            "file": self.file,
            "cell": self.cell_number,
            "cell_id": self.cell_id,
        }


@dataclass(frozen=True)
class JobConfig:
    """What ``config.ini`` (VDK's format) and ``job.toml`` (nbplane's) say about the job."""

    name: str
    team: str | None = None
    description: str | None = None
    db_url: str | None = None
    vdk_options: dict[str, dict[str, str]] = field(default_factory=dict)
    retention: dict[str, float] = field(default_factory=dict)
    """What ``config.ini``'s ``[retention]`` sets (``keep_runs``, ``keep_days``,
    ``keep_outputs``), over the NBPLANE_RETENTION_* defaults."""

    @property
    def key(self) -> str:
        """Identity of the job for properties and secrets."""
        return f"{self.team or 'default'}/{self.name}"


@dataclass(frozen=True)
class Job:
    directory: Path
    config: JobConfig
    steps: tuple[Step, ...]
    notebooks: dict[str, NotebookFile]

    @property
    def name(self) -> str:
        return self.config.name

    def find_step(self, wanted: str) -> Step:
        """A step by its name (``file#cell``), file name, cell id or 1-based step number."""
        for step in self.steps:
            if wanted in (step.name, step.cell_id) or (
                step.notebook is None and wanted == step.file
            ):
                return step
        if wanted.isdigit() and 1 <= int(wanted) <= len(self.steps):
            return self.steps[int(wanted) - 1]
        names = ", ".join(step.name for step in self.steps)
        raise JobDefinitionError(
            f"no step named {wanted!r} in {self.name}; steps: {names}", field="from_step"
        )


def natural_key(name: str) -> list[Any]:
    """Sort key that puts ``2_x`` before ``10_y``."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", name)
        if part
    ]


def load_job(directory: Path) -> Job:
    """Read a job directory into its steps, or say exactly why it is not a job."""
    if not directory.is_dir():
        raise JobDefinitionError(f"{directory}: not a directory", file=str(directory))
    config = load_config(directory)
    files = sorted(
        (
            path
            for path in directory.iterdir()
            if path.is_file() and path.suffix in STEP_SUFFIXES and not path.name.startswith(".")
        ),
        key=lambda path: natural_key(path.name),
    )
    steps: list[Step] = []
    notebooks: dict[str, NotebookFile] = {}
    for path in files:
        if path.suffix == ".ipynb":
            notebook = read_notebook(path)
            notebooks[path.name] = notebook
            steps.extend(_notebook_steps(notebook, start=len(steps)))
        elif path.suffix == ".py":
            steps.append(_python_file_step(path, index=len(steps)))
        else:
            steps.append(
                Step(
                    index=len(steps),
                    kind=StepKind.SQL_FILE,
                    file=path.name,
                    source=_read_text(path),
                    sql=_read_text(path),
                )
            )
    if not steps:
        raise JobDefinitionError(
            f"{directory}: no steps found. A job step is a notebook code cell tagged 'step' "
            "(or 'vdk'), a .py file with def run(job_input), or a .sql file.",
            file=str(directory),
        )
    return Job(
        directory=directory.resolve(), config=config, steps=tuple(steps), notebooks=notebooks
    )


def _notebook_steps(notebook: NotebookFile, start: int) -> list[Step]:
    steps: list[Step] = []
    for number, cell in enumerate(notebook.cells, start=1):
        if not is_step_cell(cell):
            continue
        source = cell_source(cell)
        sql = split_sql_cell(source)
        leading_blank = len(source) - len(source.lstrip("\n"))
        steps.append(
            Step(
                index=start + len(steps),
                kind=StepKind.SQL_CELL if sql is not None else StepKind.PYTHON_CELL,
                file=notebook.path.name,
                source=source,
                cell_number=number,
                cell_id=cell.get("id"),
                sql=sql,
                sql_line_offset=leading_blank + 1 if sql is not None else 0,
            )
        )
    return steps


def _python_file_step(path: Path, index: int) -> Step:
    source = _read_text(path)
    try:
        module = ast.parse(source, filename=path.name)
    except SyntaxError as exc:
        raise JobDefinitionError(
            f"{path.name}, line {exc.lineno}: syntax error: {exc.msg}",
            file=path.name,
            line=exc.lineno,
        ) from None
    has_run = any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run"
        for node in module.body
    )
    if not has_run:
        raise JobDefinitionError(
            f"{path.name}: a .py step must define run(job_input) at top level", file=path.name
        )
    return Step(index=index, kind=StepKind.PYTHON_FILE, file=path.name, source=source)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobDefinitionError(f"{path.name}: cannot read ({exc})", file=path.name) from None


def load_config(directory: Path) -> JobConfig:
    """Merge VDK's ``config.ini`` and nbplane's ``job.toml`` (which wins) into one config."""
    values: dict[str, Any] = {"name": directory.resolve().name}
    vdk_options: dict[str, dict[str, str]] = {}
    ini_path = directory / "config.ini"
    if ini_path.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini_path, encoding="utf-8")
        except configparser.Error as exc:
            raise JobDefinitionError(f"config.ini: {exc}", file="config.ini") from None
        vdk_options = {section: dict(parser[section]) for section in parser.sections()}
        if team := vdk_options.get("owner", {}).get("team"):
            values["team"] = team
        values["retention"] = _retention(vdk_options.get("retention", {}))
    toml_path = directory / "job.toml"
    if toml_path.is_file():
        import tomllib  # only for jobs that have a job.toml

        try:
            table = tomllib.loads(_read_text(toml_path)).get("job", {})
        except tomllib.TOMLDecodeError as exc:
            raise JobDefinitionError(f"job.toml: {exc}", file="job.toml") from None
        known = {"name": "name", "team": "team", "description": "description", "db": "db_url"}
        for key, value in table.items():
            if key not in known:
                raise JobDefinitionError(
                    f"job.toml: unknown setting [job].{key}; known: {', '.join(known)}",
                    file="job.toml",
                    field=f"job.{key}",
                )
            if not isinstance(value, str):
                raise JobDefinitionError(
                    f"job.toml: [job].{key} must be a string", file="job.toml", field=f"job.{key}"
                )
            values[known[key]] = value
    return JobConfig(vdk_options=vdk_options, **values)


RETENTION_KEYS = {"keep_runs": int, "keep_days": float, "keep_outputs": int}


def _retention(section: dict[str, str]) -> dict[str, float]:
    """``[retention]`` of config.ini: known keys, each a number of at least 0."""
    found: dict[str, float] = {}
    for key, text in section.items():
        kind = RETENTION_KEYS.get(key)
        if kind is None:
            raise JobDefinitionError(
                f"config.ini: unknown setting [retention] {key}; known: "
                + ", ".join(RETENTION_KEYS),
                file="config.ini",
                field=f"retention.{key}",
            )
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not (math.isfinite(value) and value >= 0):
            what = "a whole number" if kind is int else "a number"
            raise JobDefinitionError(
                f"config.ini: [retention] {key} must be {what} of at least 0 (0 keeps "
                f"forever), not {text!r}",
                file="config.ini",
                field=f"retention.{key}",
            )
        found[key] = value
    return found


def parse_arguments(text: str | None, option: str = "--arguments") -> dict[str, Any]:
    """A command's JSON object option (``--arguments``, ``--parameters``...) must be a JSON
    object; say which option, and where it is not."""
    if not text:
        return {}
    field = option.lstrip("-").partition(" ")[0].replace("-", "_")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field=field,
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"{option} must be a JSON object, got {type(value).__name__}", field=field
        )
    return value
