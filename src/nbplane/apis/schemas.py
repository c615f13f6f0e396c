"""jsonschema for the contracts, imported without building its format checkers' parsers.

On its first import jsonschema registers a checker for every optional format package it finds,
importing each. Two are costly for formats few contracts use: ``rfc3987_syntax`` (``iri`` and
``iri-reference``) compiles a Lark grammar as it is imported, about 16 MB and most of a second,
and ``isoduration`` (``duration``) brings arrow and dateutil, about 2 MB; both come with
``jsonschema[format-nongpl]``, as Jupyter's packages install it. So jsonschema is imported here
with them hidden, and their formats are registered again, as jsonschema registers them, each
importing its package on its first check. Import jsonschema from this module
(``from nbplane.apis.schemas import jsonschema``) so that this happens before anything else
imports it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from nbplane.platform.imports import import_hiding

Check = Callable[[object], bool]


def _iri(rule: str) -> Check:
    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        from rfc3987_syntax import is_valid_syntax  # type: ignore[import-untyped, unused-ignore]

        return bool(is_valid_syntax(rule, instance))

    return check


def _duration(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    import isoduration  # type: ignore[import-untyped, unused-ignore]

    try:
        isoduration.parse_duration(instance)
    except isoduration.DurationParsingException as exc:
        raise ValueError(str(exc)) from exc
    return instance.endswith(tuple("DMYWHMS"))  # jsonschema's own extra test


LATER_DIALECTS = ("Draft201909Validator", "Draft202012Validator")
DEFERRED: dict[str, list[tuple[str, tuple[str, ...], Check]]] = {
    "rfc3987_syntax": [
        ("iri", ("Draft7Validator", *LATER_DIALECTS), _iri("iri")),
        ("iri-reference", ("Draft7Validator", *LATER_DIALECTS), _iri("iri_reference")),
    ],
    "isoduration": [("duration", LATER_DIALECTS, _duration)],
}
"""Each format package imported on first use: (format, the dialects that check it, check)."""


def _deferrable(package: str) -> bool:
    """Whether jsonschema would import ``package``: installed, and for the ``iri`` formats
    ``rfc3987`` is not (jsonschema prefers it, and it builds nothing at import)."""
    if importlib.util.find_spec(package) is None:
        return False
    return package != "rfc3987_syntax" or importlib.util.find_spec("rfc3987") is None


def _import_deferring() -> list[str]:
    """Import jsonschema with the packages of :data:`DEFERRED` it would use hidden; returns
    those hidden (none when jsonschema was already imported)."""
    packages = [package for package in DEFERRED if _deferrable(package)]
    return packages if import_hiding("jsonschema", packages) else []


def _register(packages: list[str]) -> None:
    for package in packages:
        for name, dialects, check in DEFERRED[package]:
            for dialect in dialects:
                getattr(jsonschema, dialect).FORMAT_CHECKER.checks(name, raises=ValueError)(check)


_deferred = _import_deferring()

import jsonschema as jsonschema  # type: ignore[import-untyped, unused-ignore]  # noqa: E402

_register(_deferred)
