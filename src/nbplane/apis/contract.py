"""Notebook APIs: every ``<name>.ipynb`` with a ``<name>.config.json`` contract beside it.

The contract is jupyrest's format, ``{"input": <JSON Schema>, "output": <JSON Schema>}``, plus
optional nbplane keys (engine, timeout, retries, max_concurrency, kernel, teams). Reading one
checks the schemas themselves and compiles them once into the :class:`Checks` that
:mod:`nbplane.apis.validation` applies to parameters and outputs; a notebook or contract that
cannot be used still makes an API, ``broken`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from nbplane.apis import nbschema
from nbplane.apis.nbschema import ModelRegistry
from nbplane.apis.parameters import (
    InjectedCell,
    inject_position,
    parameter_name_problem,
    parameters_display,
    parameters_source,
)
from nbplane.apis.problems import json_type, pointer, shorten
from nbplane.apis.schemas import jsonschema
from nbplane.errors import ConfigError, ContractError, NbplaneError
from nbplane.notebooks.reader import read_notebook
from nbplane.platform.names import check_name

NOTEBOOK_SUFFIX = ".ipynb"
CONTRACT_SUFFIX = ".config.json"


class Contract(BaseModel):
    """A ``<name>.config.json``: jupyrest's ``input``/``output`` schemas plus nbplane's keys."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: dict[str, Any] = Field(description="JSON Schema of the parameters (an object).")
    output: dict[str, Any] = Field(description="JSON Schema of what save_output() saves.")
    engine: Literal["isolated", "reuse", "kernel-isolated", "kernel-reuse"] = Field(
        "isolated",
        description="isolated: a fresh IPython shell per execution; reuse: a warm shell that "
        "ran the cells above the parameters cell once; kernel-isolated and kernel-reuse: the "
        "same on Jupyter kernels, for a notebook that needs a real kernel (another language, "
        "widgets).",
    )
    timeout: float = Field(60.0, gt=0, allow_inf_nan=False, description="Seconds per execution.")
    retries: int = Field(0, ge=0, description="Attempts more when a worker is lost mid-run.")
    max_concurrency: int | None = Field(
        None, ge=1, description="Executions of this notebook at once per worker; null: no limit."
    )
    kernel: str = Field(
        "python3",
        min_length=1,
        description="Kernelspec name to run it on; other than python3 only with a kernel-* engine.",
    )
    teams: list[str] | None = Field(
        None,
        min_length=1,
        description="Only members of these teams (and admins) see and call this API; to "
        "everyone else it does not exist. Absent: every signed-in user.",
    )

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, value: str, info: ValidationInfo) -> str:
        engine = info.data.get("engine", "isolated")
        if value != "python3" and not engine.startswith("kernel-"):
            raise ValueError(
                f"the {engine} engine runs Python (python3) only; to run kernel {value!r}, "
                f"set engine to kernel-{engine}"
            )
        return value

    @field_validator("teams")
    @classmethod
    def _teams(cls, value: list[str] | None) -> list[str] | None:
        for team in value or []:
            check_name(team, "team")
        return value


@dataclass(frozen=True)
class Checks:
    """What validating needs, built once per discovery."""

    input: jsonschema.protocols.Validator
    output: jsonschema.protocols.Validator
    models: dict[str, type[BaseModel]]
    declared: Declared


@dataclass(frozen=True)
class Declared:
    """The parameter names an input schema declares (``properties``, ``patternProperties``, in
    it or in its ``allOf``/``anyOf``/``oneOf`` parts), and whether it explicitly allows others
    (``additionalProperties`` or ``unevaluatedProperties`` present and not false)."""

    names: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    open: bool

    @classmethod
    def of(cls, schema: dict[str, Any]) -> Declared:
        names: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        open_ = False
        seen: set[int] = set()
        todo: list[Any] = [schema]
        while todo:
            node = todo.pop()
            if not isinstance(node, dict) or id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for pattern in node.get("patternProperties") or {}:
                try:
                    patterns.append(re.compile(pattern))
                except re.error:
                    continue  # a pattern Python cannot read declares nothing here
            for key in ("additionalProperties", "unevaluatedProperties"):
                open_ = open_ or (key in node and node[key] is not False)
            for key in ("allOf", "anyOf", "oneOf"):
                if isinstance(node.get(key), list):
                    todo.extend(node[key])
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                todo.append(_local(schema, ref))
        return cls(frozenset(names), tuple(patterns), open_)

    def undeclared(self, parameters: Iterable[object]) -> list[str]:
        """The names among ``parameters`` not declared (names that are not strings aside:
        :func:`check_parameter_names` refuses those)."""
        if self.open:
            return []
        return [
            name
            for name in parameters
            if isinstance(name, str)
            and name not in self.names
            and not any(pattern.search(name) for pattern in self.patterns)
        ]


def _local(schema: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` (``#/...``) points at, or None."""
    node: Any = schema
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


@dataclass(frozen=True)
class NotebookApi:
    """One notebook API as found on disk; ``broken`` says why it cannot run, if it cannot."""

    name: str
    notebook_path: Path
    contract_path: Path
    contract: Contract | None
    broken: str | None
    notebook: dict[str, Any]
    version: str
    """Hash of notebook, contract and the models' schemas: keys warm kernels and records."""
    input_schema: dict[str, Any] | None
    """Input schema with ``nbschema://`` references resolved (None when broken)."""
    output_schema: dict[str, Any] | None
    model_parameters: dict[str, str] = field(default_factory=dict)
    """Top-level parameters that are models: name -> alias, or ``alias[]`` for an array of them."""
    model_targets: dict[str, str | None] = field(default_factory=dict)
    """alias -> ``module:qualname`` a kernel imports the model by (None: by entry point)."""
    _checks: Checks | None = field(default=None, repr=False, compare=False)

    def checks(self) -> Checks:
        """The compiled checks of a usable API; ContractError when it is broken."""
        if self.broken or self._checks is None:
            raise ContractError(
                f"notebook {self.name!r} is broken: {self.broken}",
                field="notebook",
                notebook=self.name,
            )
        return self._checks

    def parameters_cell(self, parameters: dict[str, Any]) -> InjectedCell:
        """The injected cell: what the kernel runs, what the executed notebook shows, where."""
        self.checks()
        return InjectedCell(
            source=parameters_source(parameters, self.model_parameters, self.model_targets),
            display=parameters_display(parameters, self.model_parameters),
            after=inject_position(self.notebook),
        )


def discover_apis(directory: Path, registry: ModelRegistry | None = None) -> dict[str, NotebookApi]:
    """Every notebook API in ``directory`` (not recursive; hidden files ignored), by name.

    An API is a contract ``<name>.config.json``; one whose notebook or contract cannot be used
    (a missing notebook included) is still listed, with ``broken`` naming the file and why.
    """
    if not directory.is_dir():
        raise ConfigError(
            f"notebooks directory {directory} does not exist or is not a directory",
            field="notebooks_dir",
        )
    if registry is None:
        registry = ModelRegistry.from_entry_points()
    names = sorted(
        path.name[: -len(CONTRACT_SUFFIX)]
        for path in directory.iterdir()
        if path.name.endswith(CONTRACT_SUFFIX) and not path.name.startswith(".") and path.is_file()
    )
    return {name: load_api(directory, name, registry) for name in names}


def load_api(directory: Path, name: str, registry: ModelRegistry) -> NotebookApi:
    """The API ``name`` of ``directory``; every problem found goes into ``broken``."""
    notebook_path = directory / f"{name}{NOTEBOOK_SUFFIX}"
    contract_path = directory / f"{name}{CONTRACT_SUFFIX}"
    problems: list[str] = []
    digest = hashlib.sha256(b"nbplane-api-1\0")

    notebook: dict[str, Any] = {}
    if not notebook_path.is_file():
        problems.append(f"{notebook_path.name}: no such notebook beside {contract_path.name}")
    else:
        try:
            notebook = read_notebook(notebook_path).node
            digest.update(notebook_path.read_bytes())
        except (NbplaneError, OSError) as exc:
            problems.append(str(exc))
        except RecursionError:
            problems.append(f"{notebook_path.name}: nested too deeply to read")
    digest.update(b"\0")

    contract: Contract | None = None
    schemas: tuple[dict[str, Any], dict[str, Any]] | None = None
    model_parameters: dict[str, str] = {}
    targets: dict[str, str | None] = {}
    checks: Checks | None = None
    try:
        raw = contract_path.read_bytes()
        digest.update(raw)
        contract = _parse_contract(contract_path.name, raw)
        input_schema, used_in = _resolve(contract.input, "input", registry, "validation")
        output_schema, used_out = _resolve(contract.output, "output", registry, "serialization")
        schemas = (input_schema, output_schema)
        input_validator = _validator(input_schema, "input")
        output_validator = _validator(output_schema, "output")
        model_parameters = _model_parameters(contract.input)
        aliases = sorted(used_in | used_out)
        targets = {alias: registry.target(alias) for alias in aliases}
        checks = Checks(
            input_validator,
            output_validator,
            {alias: registry.get(alias) for alias in aliases},
            Declared.of(input_schema),
        )
    except OSError as exc:
        problems.append(f"{contract_path.name}: cannot read the contract ({exc})")
    except RecursionError:
        problems.append(f"{contract_path.name}: nested too deeply to read")
    except NbplaneError as exc:
        problems.append(
            exc.message
            if exc.message.startswith(contract_path.name)
            else f"{contract_path.name}: {exc.message}"
        )
    if schemas is not None:
        digest.update(json.dumps([schemas, targets], sort_keys=True).encode())

    broken = "; ".join(problems) or None
    return NotebookApi(
        name=name,
        notebook_path=notebook_path,
        contract_path=contract_path,
        contract=contract,
        broken=broken,
        notebook=notebook,
        version=digest.hexdigest()[:16],
        input_schema=schemas[0] if schemas and not broken else None,
        output_schema=schemas[1] if schemas and not broken else None,
        model_parameters=model_parameters if not broken else {},
        model_targets=targets if not broken else {},
        _checks=checks if not broken else None,
    )


def _parse_contract(filename: str, raw: bytes) -> Contract:
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ContractError(f"{filename}: not UTF-8 ({exc})", file=filename) from None
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{filename}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=filename,
            line=exc.lineno,
        ) from None
    if not isinstance(document, dict):
        raise ContractError(
            f"{filename}: expected a JSON object with input and output, "
            f"found {json_type(document)}",
            file=filename,
        )
    try:
        return Contract.model_validate(document)
    except PydanticValidationError as exc:
        allowed = ", ".join(Contract.model_fields)
        messages = []
        for error in exc.errors():
            where = "/".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                messages.append(f"unknown key {where!r} (allowed: {allowed})")
            elif error["type"] == "missing":
                messages.append(f"missing key {where!r}")
            else:
                messages.append(f"{where}: {error['msg']}")
        raise ContractError(f"{filename}: {'; '.join(messages)}", file=filename) from None


def _resolve(
    schema: dict[str, Any], which: str, registry: ModelRegistry, mode: nbschema.SchemaMode
) -> tuple[dict[str, Any], set[str]]:
    try:
        return nbschema.resolve(schema, registry, mode)
    except ContractError as exc:
        raise ContractError(f"{which}: {exc.message}", **exc.fields) from None


def _validator(schema: dict[str, Any], which: str) -> jsonschema.protocols.Validator:
    """A validator for ``schema`` (Draft 2020-12 unless ``$schema`` says otherwise), after
    checking the schema itself."""
    cls: type[jsonschema.protocols.Validator] | None = jsonschema.Draft202012Validator
    if "$schema" in schema:
        cls = jsonschema.validators.validator_for(schema, default=cast(Any, None))
    if cls is None:
        raise ContractError(f"{which}: unknown $schema {schema['$schema']!r}", field=which)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = pointer(exc.absolute_path) or "/"
        raise ContractError(
            f"{which} is not a valid JSON Schema: {shorten(exc.message)} (at {where})",
            field=which,
        ) from None
    dangling = _dangling_ref(schema)
    if dangling is not None:
        raise ContractError(f"{which}: {dangling}", field=which)
    if which == "input":
        for name in schema.get("properties", {}) or {}:
            problem = parameter_name_problem(name)
            if problem is not None:
                raise ContractError(
                    f"input property {name!r} cannot be a notebook variable: {problem}",
                    field=which,
                )
    return cls(schema, format_checker=_format_checker(cls))


def _dangling_ref(schema: dict[str, Any]) -> str | None:
    """A local ``$ref`` (``#/...``) that points nowhere; schemas with nested ``$id`` are left
    to the validator, which reports unresolvable references when it meets them."""
    if any(ref == "$id" for ref in _keys(schema, skip_root=True)):
        return None
    for path, ref in nbschema.iter_refs(schema):
        if ref.startswith("#/") and _local(schema, ref) is None:
            return f"$ref {ref!r} at {path or '/'} points nowhere"
    return None


def _keys(node: Any, skip_root: bool = False) -> Iterable[str]:
    if isinstance(node, list):
        for item in node:
            yield from _keys(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if not skip_root:
                yield key
            yield from _keys(value)


def _format_checker(cls: type[jsonschema.protocols.Validator]) -> jsonschema.FormatChecker:
    """The dialect's format checks, plus ``date-time`` by the standard library when the
    optional checker jsonschema would use is not installed."""
    checker = jsonschema.FormatChecker(formats=())
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    if "date-time" not in checker.checkers:
        checker.checks("date-time", raises=ValueError)(_is_date_time)
    return checker


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if len(value) < 11 or value[10] not in "Tt ":
        return False
    datetime.fromisoformat(value.upper())
    return True


def _model_parameters(input_schema: dict[str, Any]) -> dict[str, str]:
    properties = input_schema.get("properties")
    found: dict[str, str] = {}
    if not isinstance(properties, dict):
        return found
    for name, prop in properties.items():
        alias = nbschema.alias_of(prop)
        if alias is not None:
            found[name] = alias
        elif isinstance(prop, dict) and prop.get("type") == "array":
            alias = nbschema.alias_of(prop.get("items"))
            if alias is not None:
                found[name] = f"{alias}[]"
    return found
