"""SQL as jobs write it: several statements per cell or file, ``:name`` bind parameters the
database driver fills, and ``{name}`` placeholders replaced as text (VDK's behaviour)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.\-]*)\}")
BIND_PARAMETER = re.compile(r":([A-Za-z_]\w*)")
TEXT_PARAMETER = re.compile(r"(?<![:\w\\]):\w+(?!:)")
"""What SQLAlchemy's ``text()`` reads as a parameter, unless escaped with a backslash."""


def substitute(sql: str, values: Mapping[str, Any]) -> str:
    """Replace ``{name}`` with its value, as VDK does; unknown placeholders stay as written."""
    return PLACEHOLDER.sub(
        lambda match: str(values[match[1]]) if match[1] in values else match[0], sql
    )


@dataclass(frozen=True)
class BoundSql:
    """A statement as SQLAlchemy's ``text()`` reads it, with its ``:name`` parameters."""

    text: str
    names: list[str]


def bind_parameters(sql: str) -> BoundSql:
    """Find the ``:name`` parameters of a statement as the SQL lexer sees them: a colon that
    ``text()`` would also read as one, in a string literal or a comment, is escaped to stay text.
    sqlparse is imported by the first SQL statement, not by every run."""
    import sqlparse

    names: list[str] = []
    starts: set[int] = set()
    offset = 0
    for parsed in sqlparse.parse(sql):
        for token in parsed.flatten():  # type: ignore[no-untyped-call]
            bind = BIND_PARAMETER.fullmatch(token.value)
            if token.ttype in sqlparse.tokens.Name.Placeholder and bind:
                starts.add(offset)
                if bind[1] not in names:
                    names.append(bind[1])
            offset += len(token.value)
    text = TEXT_PARAMETER.sub(
        lambda match: match[0] if match.start() in starts else "\\" + match[0], sql
    )
    return BoundSql(text=text, names=names)


@dataclass(frozen=True)
class Statement:
    text: str
    line: int
    """1-based line where the statement starts within the text it was split from."""


def split_statements(sql: str) -> list[Statement]:
    """Split a script into statements, each starting at its first token after comments, with
    the line it starts on; comment-only parts are dropped. sqlparse is imported here, by the
    first SQL step, not by every run."""
    import sqlparse

    statements = []
    line = 1
    for parsed in sqlparse.parse(sql):
        raw = str(parsed)
        lead = 0
        for token in parsed.flatten():  # type: ignore[no-untyped-call]
            if not (token.is_whitespace or token.ttype in sqlparse.tokens.Comment):
                break
            lead += len(token.value)
        text = raw[lead:].rstrip().rstrip(";").rstrip()
        if text:
            statements.append(Statement(text=text, line=line + raw[:lead].count("\n")))
        line += raw.count("\n")
    return statements


@dataclass(frozen=True)
class QueryResult:
    """Rows of the last statement, with column names (empty when it returned none)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def to_frame(self) -> Any:
        """A pandas DataFrame when pandas is installed, else this result itself."""
        try:
            import pandas
        except ImportError:
            return self
        return pandas.DataFrame.from_records(self.rows, columns=self.columns)

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
            for row in self.rows[:100]
        )
        more = f"<p>{len(self.rows) - 100} more rows</p>" if len(self.rows) > 100 else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"

    def __repr__(self) -> str:
        lines = [" | ".join(self.columns)] + [" | ".join(map(str, r)) for r in self.rows[:20]]
        if len(self.rows) > 20:
            lines.append(f"... {len(self.rows) - 20} more rows")
        return "\n".join(lines)
