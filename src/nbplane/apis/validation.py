"""Checking an execution's parameters against the input contract and its saved output against
the output contract; every problem is reported with its JSON pointer.

A parameter name the input schema does not declare is refused (unless the schema allows more)
before any value is checked, so it never reaches the notebook's namespace; parameters that are
pydantic models are also validated by their model, so what it refuses is a 422, not a failed run.
"""

from __future__ import annotations

from typing import Any

import referencing.exceptions
from pydantic import ValidationError as PydanticValidationError

from nbplane.apis.contract import Checks, NotebookApi
from nbplane.apis.nbschema import escape_pointer
from nbplane.apis.parameters import check_parameter_names
from nbplane.apis.problems import json_type, pointer, shorten, summary
from nbplane.apis.schemas import jsonschema
from nbplane.errors import ContractError, InvalidInput, InvalidOutput


def validate_input(api: NotebookApi, parameters: Any) -> dict[str, Any]:
    """``parameters`` when they fit the input contract, else :class:`InvalidInput` listing
    every problem as ``{"pointer", "message"}``."""
    checks = api.checks()
    if not isinstance(parameters, dict):
        message = f"parameters must be a JSON object, found {json_type(parameters)}"
        raise InvalidInput(
            message,
            errors=[{"pointer": "", "message": message}],
            notebook=api.name,
            field="parameters",
        )
    errors = check_parameter_names(parameters)
    named = {error["pointer"] for error in errors}
    undeclared = [
        name
        for name in checks.declared.undeclared(parameters)
        if "/" + escape_pointer(name) not in named
    ]
    if undeclared:
        # Refused before the values are checked: a name the contract does not declare would
        # otherwise reach the notebook's namespace (and a warm kernel's next caller).
        errors += [
            {"pointer": "/" + escape_pointer(name), "message": "not declared by the input contract"}
            for name in undeclared
        ]
        raise InvalidInput(
            f"invalid parameters: {summary(errors)}",
            errors=errors,
            notebook=api.name,
            field=f"parameters.{undeclared[0]}",
        )
    errors += _schema_errors(api, checks.input, parameters)
    if not errors:
        errors += _model_errors(api, checks, parameters)
    if errors:
        raise InvalidInput(
            f"invalid parameters: {summary(errors)}",
            errors=errors,
            notebook=api.name,
            field="parameters",
        )
    return dict(parameters)


def validate_output(api: NotebookApi, output: Any) -> None:
    """Raise :class:`InvalidOutput` listing every place where ``output`` breaks the output
    contract; ``None`` stands for "nothing saved"."""
    checks = api.checks()
    errors = _schema_errors(api, checks.output, output)
    if errors:
        hint = (
            "no output was saved (call nbplane.save_output(...) in the notebook): "
            if output is None
            else ""
        )
        raise InvalidOutput(
            f"{hint}{summary(errors)}", errors=errors, notebook=api.name, field="output"
        )


def _schema_errors(
    api: NotebookApi, validator: jsonschema.protocols.Validator, instance: Any
) -> list[dict[str, str]]:
    try:
        found = list(validator.iter_errors(instance))
    except referencing.exceptions.Unresolvable as exc:
        raise ContractError(
            f"notebook {api.name!r}: its contract has a $ref that cannot be resolved ({exc})",
            field="notebook",
            notebook=api.name,
        ) from None
    return [_error(error) for error in found]


def _error(error: jsonschema.exceptions.ValidationError) -> dict[str, str]:
    where = pointer(error.absolute_path)
    required = error.validator_value
    if (
        error.validator == "required"
        and isinstance(error.instance, dict)
        and isinstance(required, list)
    ):
        # jsonschema reports each missing property apart: point at the one missing
        for name in required:
            if name not in error.instance and error.message == f"{name!r} is a required property":
                where = f"{where}/{escape_pointer(str(name))}"
                break
    return {"pointer": where, "message": shorten(error.message)}


def _model_errors(
    api: NotebookApi, checks: Checks, parameters: dict[str, Any]
) -> list[dict[str, str]]:
    """Parameters that are models are rebuilt by pydantic in the kernel: check them here so
    what pydantic refuses (validators the schema cannot say) is a 422, not a failed run."""
    errors: list[dict[str, str]] = []
    for name, spec in api.model_parameters.items():
        if name not in parameters or parameters[name] is None:
            continue
        alias, many = spec.removesuffix("[]"), spec.endswith("[]")
        model = checks.models[alias]
        value = parameters[name]
        items = list(enumerate(value)) if many and isinstance(value, list) else [(None, value)]
        for index, item in items:
            base = "/" + escape_pointer(name) + (f"/{index}" if index is not None else "")
            try:
                model.model_validate(item)
            except PydanticValidationError as exc:
                errors += [
                    {"pointer": base + pointer(error["loc"]), "message": shorten(error["msg"])}
                    for error in exc.errors()
                ]
    return errors
