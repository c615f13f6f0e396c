"""Read notebooks and tell which cells are steps or SQL.

Running a job reads notebooks with ``json`` and checks the structure the runner relies on,
naming the cell and field at fault. nbformat is not imported on this path: its import pulls in
jsonschema, about a tenth of a whole job run. Full nbformat validation happens where a notebook
leaves the machine (``nbplane job export``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbplane.errors import JobDefinitionError

STEP_TAGS = frozenset({"step", "vdk"})
SQL_MAGICS = frozenset({"%%sql", "%%vdksql"})


def cell_source(cell: Any) -> str:
    """A cell's source as one string; nbformat allows a string or a list of lines."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def cell_tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


def is_step_cell(cell: Any) -> bool:
    return cell.get("cell_type") == "code" and bool(STEP_TAGS.intersection(cell_tags(cell)))


def split_sql_cell(source: str) -> str | None:
    """The SQL of a cell whose first line is ``%%sql`` or ``%%vdksql``, else None."""
    first_line, _, rest = source.lstrip("\n").partition("\n")
    if first_line.split(maxsplit=1)[:1] and first_line.split()[0] in SQL_MAGICS:
        return rest
    return None


@dataclass(frozen=True)
class NotebookFile:
    """A notebook read from disk, as the JSON document nbformat 4 describes."""

    path: Path
    node: dict[str, Any]

    @property
    def cells(self) -> list[dict[str, Any]]:
        return list(self.node["cells"])


def read_notebook(path: Path) -> NotebookFile:
    """Read a notebook; any problem names the file, the cell and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobDefinitionError(
            f"{path.name}: cannot read the notebook ({exc})", file=str(path)
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobDefinitionError(
            f"{path.name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=str(path),
            line=exc.lineno,
        ) from None
    if isinstance(document, dict) and document.get("nbformat") == 3:
        document = _upgrade(path, document)
    problem = structure_problem(document)
    if problem is not None:
        where, what = problem
        raise JobDefinitionError(
            f"{path.name}: invalid notebook at {where}: {what}", file=str(path), field=where
        )
    return NotebookFile(path=path, node=document)


def structure_problem(document: Any) -> tuple[str, str] | None:
    """The first place where ``document`` is not a notebook the runner can use, and why."""
    if not isinstance(document, dict):
        return "(document)", f"expected a JSON object, found {type(document).__name__}"
    if document.get("nbformat") != 4:
        return "nbformat", f"expected nbformat 4, found {document.get('nbformat')!r}"
    if not isinstance(document.get("metadata"), dict):
        return "metadata", "missing or not an object"
    cells = document.get("cells")
    if not isinstance(cells, list):
        return "cells", "missing or not a list"
    for index, cell in enumerate(cells):
        where = f"cells/{index} (cell {index + 1})"
        if not isinstance(cell, dict):
            return where, "not an object"
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            return (
                f"{where}/cell_type",
                f"expected code, markdown or raw, found {cell.get('cell_type')!r}",
            )
        source = cell.get("source")
        if not (
            isinstance(source, str)
            or (isinstance(source, list) and all(isinstance(line, str) for line in source))
        ):
            return f"{where}/source", "missing, or not a string or a list of strings"
        metadata = cell.get("metadata", {})
        if not isinstance(metadata, dict):
            return f"{where}/metadata", "not an object"
        tags = metadata.get("tags", [])
        if not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
            return f"{where}/metadata/tags", "not a list of strings"
        if cell["cell_type"] == "code" and not isinstance(cell.get("outputs", []), list):
            return f"{where}/outputs", "not a list"
    return None


def _upgrade(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Old nbformat 3 notebooks are converted the way Jupyter does when it opens them."""
    import nbformat

    try:
        return dict(nbformat.convert(nbformat.from_dict(document), 4))
    except Exception as exc:  # nbformat raises several unrelated types for bad documents
        raise JobDefinitionError(f"{path.name}: not a notebook ({exc})", file=str(path)) from None


def quiet_missing_cell_ids() -> None:
    """Call before nbformat reads or validates notebooks. nbformat 4.5 wants an id on every
    cell; reading a notebook without them it adds them itself and warns on stderr
    (``MissingIDFieldWarning``, several lines per command). Notebooks of older tools and the
    executed copies nbplane records lack some; the ids added are the ones Jupyter would add on
    opening, so the warning tells a user nothing they can act on and is not shown."""
    import warnings

    from nbformat.warnings import MissingIDFieldWarning

    warnings.filterwarnings("ignore", category=MissingIDFieldWarning)


def notebook_json(document: dict[str, Any]) -> str:
    """Serialize a notebook as Jupyter writes it (sorted keys, one-space indent)."""
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
