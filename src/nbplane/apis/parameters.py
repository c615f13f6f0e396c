"""The injected parameters cell: which names may become notebook variables, and the source of
the cell that binds them.

Parameters reach the kernel as JSON data decoded there, never as code built from names or values;
the kernel checks each name again before binding it. The cell goes right after the one tagged
``parameters`` (papermill's convention).
"""

from __future__ import annotations

import json
import keyword
import unicodedata
from collections.abc import Mapping
from typing import Any

from nbplane.apis.nbschema import escape_pointer
from nbplane.apis.problems import shorten, summary
from nbplane.errors import InvalidInput
from nbplane.notebooks.reader import cell_tags

PARAMETERS_TAG = "parameters"


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
    if not isinstance(parameters, dict):
        raise InvalidInput(
            "parameters must be a JSON object", errors=[{"pointer": "", "message": "not an object"}]
        )
    errors = check_parameter_names(parameters)
    if errors:
        raise InvalidInput(
            f"invalid parameters: {summary(errors)}", errors=errors, field="parameters"
        )
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


def inject_position(notebook: Mapping[str, Any]) -> int:
    """Index of the first cell tagged ``parameters`` (the injected cell goes right after it),
    or -1: before the first cell. papermill's convention."""
    cells = notebook.get("cells")
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if isinstance(cell, dict) and PARAMETERS_TAG in cell_tags(cell):
            return index
    return -1
