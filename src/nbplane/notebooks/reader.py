"""Read notebooks with nbformat and tell which cells are steps, SQL or parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

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
    """A notebook read from disk, still in nbformat's node form."""

    path: Path
    node: Any

    @property
    def cells(self) -> list[Any]:
        return list(self.node.cells)


def read_notebook(path: Path) -> NotebookFile:
    """Read and validate a notebook; any problem names the file and what is wrong with it."""
    from nbformat.reader import reads as parse
    from nbformat.validator import get_validator

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobDefinitionError(
            f"{path.name}: cannot read the notebook ({exc})", file=str(path)
        ) from None
    try:
        node = parse(text)
        if node.get("nbformat") != 4:
            node = nbformat.convert(node, 4)
    except json.JSONDecodeError as exc:
        raise JobDefinitionError(
            f"{path.name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=str(path),
            line=exc.lineno,
        ) from None
    except Exception as exc:  # nbformat raises several unrelated types for bad documents
        raise JobDefinitionError(f"{path.name}: not a notebook ({exc})", file=str(path)) from None
    # The jsonschema backend starts in milliseconds; fastjsonschema compiles for 100+ ms.
    validator = get_validator(
        version=4, version_minor=node.get("nbformat_minor"), name="jsonschema"
    )
    if validator is None:
        raise JobDefinitionError(
            f"{path.name}: unsupported notebook format 4.{node.get('nbformat_minor')}",
            file=str(path),
        )
    error = next(iter(validator.iter_errors(node)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(document)"
        raise JobDefinitionError(
            f"{path.name}: invalid notebook at {where}: {error.message}",
            file=str(path),
            field=where,
        )
    return NotebookFile(path=path, node=node)
