"""The injected parameters cell: which names may become notebook variables, the source of the
cell that binds them, and what the executed notebook shows in its place.

Parameters reach the kernel as JSON data decoded there, never as code built from names or values;
the kernel checks each name again before binding it. The executed notebook shows the values
instead, as papermill does (``x = 3``): text for people, never run. The cell goes right after
the one tagged ``parameters`` (papermill's convention).
"""

from __future__ import annotations

import json
import keyword
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

from nbplane.apis.nbschema import escape_pointer
from nbplane.apis.problems import shorten, summary
from nbplane.errors import InvalidInput
from nbplane.notebooks.reader import cell_tags

PARAMETERS_TAG = "parameters"

DISPLAY_LIMIT = 500
"""Characters a value may take in the displayed cell; a longer one shows as ``...`` and a comment
saying what it is (the kernel still gets all of it)."""


class InjectedCell(NamedTuple):
    """The parameters cell of one execution."""

    source: str
    """What the kernel runs: :func:`parameters_source`."""
    display: str
    """What the executed notebook shows: :func:`parameters_display`."""
    after: int
    """Index of the cell it goes after (-1: before the first cell)."""


def parameter_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be bound as a notebook variable, or None when it can."""
    if not isinstance(name, str):
        return f"names are strings, found {type(name).__name__}"
    if not name.isidentifier():
        return "not a Python identifier"
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name.startswith("__"):
        return "names starting with '__' are reserved"
    if unicodedata.normalize("NFKC", name) != name:
        return "not in Unicode NFKC form (Python would read it as another name)"
    return None


def check_parameter_names(parameters: Mapping[Any, Any]) -> list[dict[str, str]]:
    """One error per parameter name that cannot be a notebook variable."""
    errors = []
    for name in parameters:
        problem = parameter_name_problem(name)
        if problem is not None:
            errors.append(
                {
                    "pointer": "/" + escape_pointer(str(name)),
                    "message": f"parameter name {shorten(repr(name))}: {problem}",
                }
            )
    return errors


_SOURCE_HEAD = """\
# Parameters injected by nbplane: JSON text decoded here, never run as code.
def __nbplane_bind(text, namespace):
    import json
    import keyword
    import unicodedata

    payload = json.loads(text)
    models = payload["models"]
    for name, value in payload["parameters"].items():
        if (
            not name.isidentifier()
            or keyword.iskeyword(name)
            or name.startswith("__")
            or unicodedata.normalize("NFKC", name) != name
        ):
            raise ValueError(f"nbplane: refused parameter name {name!r}")
        if name in models and value is not None:
            from nbplane.apis.nbschema import load_model

            alias, target, many = models[name]
            model = load_model(alias, target)
            if many:
                value = [model.model_validate(item) for item in value]
            else:
                value = model.model_validate(value)
        namespace[name] = value


try:
    __nbplane_bind(
        """
_SOURCE_TAIL = """,
        globals(),
    )
finally:
    del __nbplane_bind
"""


def parameters_source(
    parameters: dict[str, Any],
    model_parameters: Mapping[str, str],
    model_targets: Mapping[str, str | None] | None = None,
) -> str:
    """Source of the injected cell: the parameters' JSON embedded once as a string literal,
    decoded in the kernel and bound with ``globals()[name] = value`` after the kernel checks
    each name again. Model parameters are rebuilt with ``load_model(alias, target)``."""
    _check(parameters)
    targets = model_targets or {}
    models: dict[str, list[Any]] = {}
    for name, spec in model_parameters.items():
        if name in parameters:
            alias = spec.removesuffix("[]")
            models[name] = [alias, targets.get(alias), spec.endswith("[]")]
    try:
        text = json.dumps({"parameters": parameters, "models": models}, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"parameters are not JSON data: {exc}",
            errors=[{"pointer": "", "message": str(exc)}],
            field="parameters",
        ) from None
    # repr() of a str is a Python string literal of exactly that text (non-printable
    # characters escaped), so no value can end the literal early.
    return _SOURCE_HEAD + repr(text) + _SOURCE_TAIL


def parameters_display(parameters: dict[str, Any], model_parameters: Mapping[str, str]) -> str:
    """The injected cell as the executed notebook shows it: ``name = value`` per parameter, each
    value a Python literal equal to the JSON value the kernel bound. Only names that
    :func:`parameter_name_problem` accepts appear, and ``repr`` keeps every string on its line,
    so no value can add a line of code."""
    _check(parameters)
    lines = ["# Parameters"]
    for name, value in parameters.items():
        try:
            line = f"{name} = {_literal(value, DISPLAY_LIMIT)}"
            notes = []
        except _TooLong:
            line = f"{name} = ..."
            notes = [f"{_kind(value)}, too long to show here (the notebook got all of it)"]
        spec = model_parameters.get(name)
        alias = spec.removesuffix("[]") if spec else ""
        if value is not None and re.fullmatch(r"[\w.-]{1,100}", alias):
            many = spec != alias
            notes.append(f"a list of {alias} models" if many else f"a {alias} model")
        lines.append(line + (f"  # {'; '.join(notes)}" if notes else ""))
    return "\n".join(lines)


class _TooLong(Exception):
    """A value's literal would take more room than it has."""


def _literal(value: Any, room: int) -> str:
    """A Python literal of the JSON value ``value`` in at most ``room`` characters (each
    nesting level takes room, so deep nesting stops early)."""
    if room < 1:
        raise _TooLong
    if isinstance(value, str):
        if len(value) > room:
            raise _TooLong
        text = _string(value)
    elif isinstance(value, float) and not math.isfinite(value):
        text = f'float("{value!r}")'
    elif value is None or isinstance(value, bool | int | float):
        if isinstance(value, int) and value.bit_length() > room * 4:
            raise _TooLong
        text = repr(value)
    elif isinstance(value, list | dict):
        parts, used = [], 2
        items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        for key, item in items:
            prefix = "" if key is None else _literal(key, room - used) + ": "
            parts.append(prefix + _literal(item, room - used - len(prefix)))
            used += len(parts[-1]) + 2
            if used > room:
                raise _TooLong
        text = ("{%s}" if isinstance(value, dict) else "[%s]") % ", ".join(parts)
    else:
        raise TypeError(f"not JSON data: {type(value).__name__}")
    if len(text) > room:
        raise _TooLong
    return text


def _string(value: str) -> str:
    """``repr`` (each non-printable character escaped, so one line), in double quotes like
    papermill's when the text has none."""
    text = repr(value)
    if text.startswith("'") and '"' not in value:
        return f'"{text[1:-1]}"'
    return text


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    if isinstance(value, list):
        return f"a list of {len(value):,} item{'s' * (len(value) != 1)}"
    if isinstance(value, dict):
        return f"an object with {len(value):,} key{'s' * (len(value) != 1)}"
    return f"a {type(value).__name__}"


def _check(parameters: Any) -> None:
    """Raise :class:`InvalidInput` unless ``parameters`` is an object of bindable names."""
    if not isinstance(parameters, dict):
        raise InvalidInput(
            "parameters must be a JSON object", errors=[{"pointer": "", "message": "not an object"}]
        )
    errors = check_parameter_names(parameters)
    if errors:
        raise InvalidInput(
            f"invalid parameters: {summary(errors)}", errors=errors, field="parameters"
        )


def inject_position(notebook: Mapping[str, Any]) -> int:
    """Index of the first cell tagged ``parameters`` (the injected cell goes right after it),
    or -1: before the first cell. papermill's convention."""
    cells = notebook.get("cells")
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if isinstance(cell, dict) and PARAMETERS_TAG in cell_tags(cell):
            return index
    return -1
