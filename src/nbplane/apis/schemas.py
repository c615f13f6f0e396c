"""jsonschema for the contracts, imported without building the ``iri`` format's parser.

On its first import jsonschema registers a checker for every optional format package it finds.
For ``iri`` and ``iri-reference`` that is ``rfc3987_syntax`` (installed with
``jsonschema[format-nongpl]``, as Jupyter's packages install it), which compiles a Lark grammar
as it is imported: about 16 MB and most of a second in every server and worker, for two formats
few contracts use. So jsonschema is imported here with that package hidden, and the two formats
are registered again, as jsonschema would, with the package imported on their first check.
Import jsonschema from this module (``from nbplane.apis.schemas import jsonschema``) so that
this happens before anything else imports it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from nbplane.platform.imports import import_hiding

DEFERRED = "rfc3987_syntax"
"""The format package whose import waits for the first check of its formats."""
DEFERRED_FORMATS = {"iri": "iri", "iri-reference": "iri_reference"}
"""The formats it checks, by their JSON Schema name: its name of the rule."""


def _deferred_check(rule: str) -> Callable[[object], bool]:
    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        from rfc3987_syntax import is_valid_syntax  # type: ignore[import-untyped, unused-ignore]

        return bool(is_valid_syntax(rule, instance))

    return check


def _register_deferred_checks() -> None:
    for validator in (
        jsonschema.Draft7Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft202012Validator,
    ):
        for name, rule in DEFERRED_FORMATS.items():
            validator.FORMAT_CHECKER.checks(name, raises=ValueError)(_deferred_check(rule))


# Only when jsonschema would import it: installed, and ``rfc3987`` (which it prefers) is not.
_deferred = (
    importlib.util.find_spec(DEFERRED) is not None
    and importlib.util.find_spec("rfc3987") is None
    and import_hiding("jsonschema", DEFERRED)
)

import jsonschema as jsonschema  # type: ignore[import-untyped, unused-ignore]  # noqa: E402

if _deferred:
    _register_deferred_checks()
