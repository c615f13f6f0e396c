"""Notebook API contracts: discovery, nbschema models, validation, parameter injection."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from nbplane.apis.contract import Contract, NotebookApi, discover_apis
from nbplane.apis.nbschema import ModelRegistry, load_model, model_schema
from nbplane.apis.output import OUTPUT_MIMETYPE, to_json_data
from nbplane.apis.parameters import (
    DISPLAY_LIMIT,
    inject_position,
    parameters_display,
    parameters_source,
)
from nbplane.apis.validation import validate_input, validate_output
from nbplane.errors import (
    ConfigError,
    Conflict,
    ContractError,
    InvalidInput,
    InvalidOutput,
    NbplaneError,
)
from tests.conftest import write_notebook


class Point(BaseModel):
    x: int
    y: int = 0

    @field_validator("x")
    @classmethod
    def not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("x must not be negative")
        return value


class Sample(BaseModel):
    foo: str
    start_time: datetime
    where: Point


class NoSchema(BaseModel):
    call: Callable[[], int]


class Node(BaseModel):
    name: str
    children: list[Node] = []


ANALYSIS = {
    "input": {
        "type": "object",
        "properties": {"customer_name": {"type": "string"}},
        "required": ["customer_name"],
    },
    "output": {
        "type": "object",
        "properties": {"needs_discount": {"type": "boolean"}},
        "required": ["needs_discount"],
    },
}


def registry() -> ModelRegistry:
    models = ModelRegistry()
    models.add("point", Point)
    models.add("sample_model", Sample)
    models.add("node", Node)
    models.add("no_schema", NoSchema)
    return models


def write_api(
    directory: Path, name: str, contract: dict[str, Any] | str, cells: list[Any] | None = None
) -> None:
    write_notebook(directory / f"{name}.ipynb", cells or [("x = 1", [])])
    text = contract if isinstance(contract, str) else json.dumps(contract)
    (directory / f"{name}.config.json").write_text(text, encoding="utf-8")


def api_for(
    tmp_path: Path, contract: dict[str, Any], cells: list[Any] | None = None
) -> NotebookApi:
    write_api(tmp_path, "api", contract, cells)
    api = discover_apis(tmp_path, registry())["api"]
    assert api.broken is None, api.broken
    return api


# --- discovery -------------------------------------------------------------------------------


def test_discovers_a_jupyrest_contract_with_defaults(tmp_path: Path) -> None:
    write_api(tmp_path, "analysis", ANALYSIS, [("import os", ["parameters"]), ("y = 2", [])])
    write_notebook(tmp_path / "no_contract.ipynb", ["x = 1"])
    apis = discover_apis(tmp_path, ModelRegistry())
    assert list(apis) == ["analysis"]
    api = apis["analysis"]
    assert api.broken is None and api.contract is not None
    assert (api.contract.engine, api.contract.timeout, api.contract.retries) == ("isolated", 60, 0)
    assert (api.contract.max_concurrency, api.contract.kernel) == (None, "python3")
    assert api.notebook_path == tmp_path / "analysis.ipynb"
    assert api.contract_path == tmp_path / "analysis.config.json"
    assert api.input_schema == ANALYSIS["input"] and api.output_schema == ANALYSIS["output"]
    assert api.notebook["nbformat"] == 4 and len(api.notebook["cells"]) == 2
    assert api.model_parameters == {}


def test_nbplane_keys(tmp_path: Path) -> None:
    contract = {
        **ANALYSIS,
        "engine": "reuse",
        "timeout": 2.5,
        "retries": 3,
        "max_concurrency": 2,
        "kernel": "python3",
        "teams": ["sales", "ops"],
    }
    api = api_for(tmp_path, contract)
    assert api.contract == Contract.model_validate(contract)
    assert api.contract is not None and api.contract.engine == "reuse"
    assert api.contract.teams == ["sales", "ops"]
    assert api_for(tmp_path, ANALYSIS).contract.teams is None


@pytest.mark.parametrize("engine", ["kernel-isolated", "kernel-reuse"])
def test_a_kernel_engine_runs_any_kernelspec(tmp_path: Path, engine: str) -> None:
    api = api_for(tmp_path, {**ANALYSIS, "engine": engine, "kernel": "ir"})
    assert api.contract is not None and (api.contract.engine, api.contract.kernel) == (engine, "ir")


def test_version_follows_notebook_and_contract(tmp_path: Path) -> None:
    write_api(tmp_path, "a", ANALYSIS)
    first = discover_apis(tmp_path, ModelRegistry())["a"].version
    assert discover_apis(tmp_path, ModelRegistry())["a"].version == first
    write_notebook(tmp_path / "a.ipynb", [("x = 2", [])])
    second = discover_apis(tmp_path, ModelRegistry())["a"].version
    (tmp_path / "a.config.json").write_text(json.dumps({**ANALYSIS, "timeout": 5}))
    third = discover_apis(tmp_path, ModelRegistry())["a"].version
    assert len({first, second, third}) == 3


BROKEN_CONTRACTS = [
    ("{not json", "a.config.json: not valid JSON at line 1, column 2"),
    ("[]", "a.config.json: expected a JSON object with input and output, found an array"),
    ({**ANALYSIS, "extra": 1}, "a.config.json: unknown key 'extra' (allowed: input, output"),
    ({"output": {}}, "a.config.json: missing key 'input'"),
    (
        {**ANALYSIS, "engine": "fast"},
        "a.config.json: engine: Input should be 'isolated', 'reuse', 'kernel-isolated' or "
        "'kernel-reuse'",
    ),
    (
        {**ANALYSIS, "kernel": "ir"},
        "a.config.json: kernel: Value error, the isolated engine runs Python (python3) only; to "
        "run kernel 'ir', set engine to kernel-isolated",
    ),
    (
        {**ANALYSIS, "engine": "reuse", "kernel": "ir"},
        "a.config.json: kernel: Value error, the reuse engine runs Python (python3) only",
    ),
    ({**ANALYSIS, "timeout": 0}, "a.config.json: timeout: Input should be greater than 0"),
    ({**ANALYSIS, "timeout": "60"}, "a.config.json: timeout: Input should be a valid number"),
    ({**ANALYSIS, "retries": -1}, "a.config.json: retries: Input should be greater than or"),
    ({**ANALYSIS, "retries": True}, "a.config.json: retries: Input should be a valid integer"),
    ({**ANALYSIS, "max_concurrency": 0}, "a.config.json: max_concurrency: Input should be"),
    ({**ANALYSIS, "kernel": ""}, "a.config.json: kernel: String should have at least 1"),
    ({**ANALYSIS, "teams": []}, "a.config.json: teams: List should have at least 1 item"),
    ({**ANALYSIS, "teams": "sales"}, "a.config.json: teams: Input should be a valid list"),
    (
        {**ANALYSIS, "teams": ["Sales Team"]},
        "a.config.json: teams: Value error, team 'Sales Team' must be 1-63 characters",
    ),
    ({"input": [], "output": {}}, "a.config.json: input: Input should be a valid dictionary"),
    (
        {"input": {"type": "strin"}, "output": {}},
        "a.config.json: input is not a valid JSON Schema: 'strin' is not valid under any of the "
        "given schemas (at /type)",
    ),
    (
        {"input": {}, "output": {"properties": {"a": {"minimum": "0"}}}},
        "a.config.json: output is not a valid JSON Schema: '0' is not of type 'number' "
        "(at /properties/a/minimum)",
    ),
    (
        {"input": {"properties": {"p": {"$ref": "nbschema://nope"}}}, "output": {}},
        "a.config.json: input: unknown nbschema alias 'nope' at /properties/p/$ref (known: "
        "no_schema, node, point, sample_model)",
    ),
    (
        {"input": {}, "output": {"$schema": "https://example.com/my-dialect"}},
        "a.config.json: output: unknown $schema 'https://example.com/my-dialect'",
    ),
    (
        {"input": {"properties": {"p": {"$ref": "#/$defs/missing"}}}, "output": {}},
        "a.config.json: input: $ref '#/$defs/missing' at /properties/p points nowhere",
    ),
    (
        {"input": {"properties": {"customer-name": {}}}, "output": {}},
        "a.config.json: input property 'customer-name' cannot be a notebook variable: not a "
        "Python identifier",
    ),
    (
        {"input": {"properties": {"class": {}}}, "output": {}},
        "a.config.json: input property 'class' cannot be a notebook variable: a Python keyword",
    ),
    (
        {"input": {"properties": {"p": {"type": "string", "pattern": "("}}}, "output": {}},
        "a.config.json: input is not a valid JSON Schema: '(' is not a 'regex' "
        "(at /properties/p/pattern)",
    ),
    (
        {"input": {}, "output": {"$ref": "nbschema://no_schema"}},
        "a.config.json: output: nbschema model 'no_schema' (NoSchema) has no JSON Schema",
    ),
    ("[" * 100_000 + "]" * 100_000, "a.config.json: nested too deeply to read"),
]


@pytest.mark.parametrize(("contract", "reason"), BROKEN_CONTRACTS)
def test_broken_contracts_are_listed_with_their_reason(
    tmp_path: Path, contract: dict[str, Any] | str, reason: str
) -> None:
    write_api(tmp_path, "a", contract)
    write_api(tmp_path, "good", ANALYSIS)
    apis = discover_apis(tmp_path, registry())
    assert apis["good"].broken is None
    api = apis["a"]
    assert api.broken is not None and api.broken.startswith(reason), api.broken
    assert api.input_schema is None and api.output_schema is None
    assert api.version
    with pytest.raises(Conflict, match=r"is broken: a\.config\.json"):
        validate_input(api, {})
    with pytest.raises(ContractError):
        api.parameters_cell({})


def test_broken_notebooks_are_listed_with_their_reason(tmp_path: Path) -> None:
    write_api(tmp_path, "bad_json", ANALYSIS)
    (tmp_path / "bad_json.ipynb").write_text("{", encoding="utf-8")
    write_api(tmp_path, "bad_cell", ANALYSIS)
    (tmp_path / "bad_cell.ipynb").write_text(
        json.dumps(
            {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "x"}]}
        )
    )
    write_api(tmp_path, "binary", ANALYSIS)
    (tmp_path / "binary.ipynb").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "orphan.config.json").write_text(json.dumps(ANALYSIS))
    write_api(tmp_path, "both", "{")
    (tmp_path / "both.ipynb").write_text("[]", encoding="utf-8")
    apis = discover_apis(tmp_path, ModelRegistry())
    reasons = {name: api.broken for name, api in apis.items()}
    assert reasons == {
        "bad_cell": "bad_cell.ipynb: invalid notebook at cells/0 (cell 1)/cell_type: expected "
        "code, markdown or raw, found 'x'",
        "bad_json": "bad_json.ipynb: not valid JSON at line 1, column 2: Expecting property "
        "name enclosed in double quotes",
        "binary": reasons["binary"],
        "both": "both.ipynb: invalid notebook at (document): expected a JSON object, found "
        "list; both.config.json: not valid JSON at line 1, column 2: Expecting property "
        "name enclosed in double quotes",
        "orphan": "orphan.ipynb: no such notebook beside orphan.config.json",
    }
    assert (reasons["binary"] or "").startswith("binary.ipynb: cannot read the notebook")
    assert apis["bad_cell"].contract is not None  # the contract itself is fine


def test_checkpoints_hidden_files_and_subdirectories_are_ignored(tmp_path: Path) -> None:
    write_api(tmp_path, "a", ANALYSIS)
    checkpoints = tmp_path / ".ipynb_checkpoints"
    checkpoints.mkdir()
    write_api(checkpoints, "a-checkpoint", ANALYSIS)
    write_api(checkpoints, "a", "{")
    write_api(tmp_path, ".hidden", ANALYSIS)
    (tmp_path / "sub").mkdir()
    write_api(tmp_path / "sub", "b", ANALYSIS)
    (tmp_path / "dir.config.json").mkdir()
    assert list(discover_apis(tmp_path, ModelRegistry())) == ["a"]


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover_apis(tmp_path / "nope", ModelRegistry())


# --- nbschema ----------------------------------------------------------------------------------


def test_nbschema_refs_resolve_anywhere(tmp_path: Path) -> None:
    contract = {
        "input": {
            "type": "object",
            "properties": {
                "objects": {"type": "array", "items": {"$ref": "nbschema://sample_model"}},
                "origin": {"$ref": "nbschema://point", "description": "where to start"},
                "nested": {"$ref": "#/$defs/wrapper"},
                "foo": {"type": "string", "default": {"$ref": "nbschema://not-resolved"}},
            },
            "$defs": {
                "wrapper": {"type": "object", "properties": {"p": {"$ref": "nbschema://point"}}}
            },
            "required": ["objects", "foo"],
        },
        "output": {
            "type": "object",
            "properties": {
                "new_objects": {
                    "type": "object",
                    "additionalProperties": {"$ref": "nbschema://sample_model"},
                }
            },
        },
    }
    api = api_for(tmp_path, contract)
    assert api.input_schema is not None and api.output_schema is not None
    props = api.input_schema["properties"]
    point = {
        "properties": {
            "x": {"title": "X", "type": "integer"},
            "y": {"default": 0, "title": "Y", "type": "integer"},
        },
        "required": ["x"],
        "title": "Point",
        "type": "object",
    }
    assert props["origin"] == {**point, "description": "where to start"}
    assert props["objects"]["items"]["properties"]["where"] == point  # nested model inlined
    assert api.input_schema["$defs"]["wrapper"]["properties"]["p"] == point
    assert props["foo"]["default"] == {"$ref": "nbschema://not-resolved"}  # data, not a schema
    assert "nbschema://" not in json.dumps(api.output_schema)
    assert api.model_parameters == {"objects": "sample_model[]", "origin": "point"}
    assert api.model_targets == {"point": f"{__name__}:Point", "sample_model": f"{__name__}:Sample"}
    validate_input(
        api,
        {
            "foo": "x",
            "objects": [
                {"foo": "f", "start_time": "2021-02-28T04:09:09.5730000Z", "where": {"x": 1}}
            ],
        },
    )


def test_recursive_models_live_under_defs(tmp_path: Path) -> None:
    contract = {
        "input": {"type": "object", "properties": {"tree": {"$ref": "nbschema://node"}}},
        "output": {"$ref": "nbschema://node"},
    }
    api = api_for(tmp_path, contract)
    assert api.input_schema is not None
    assert api.input_schema["properties"]["tree"] == {"$ref": "#/$defs/nbschema.node.Node"}
    assert "nbschema.node.Node" in api.input_schema["$defs"]
    validate_input(api, {"tree": {"name": "a", "children": [{"name": "b"}]}})
    with pytest.raises(InvalidInput) as caught:
        validate_input(api, {"tree": {"name": "a", "children": [{"name": 1}]}})
    assert caught.value.fields["errors"] == [
        {"pointer": "/tree/children/0/name", "message": "1 is not of type 'string'"}
    ]
    validate_output(api, {"name": "root"})


def test_model_schema_inlines_shared_definitions() -> None:
    schema, hoisted = model_schema(Sample, "sample_model")
    assert hoisted == {} and "$defs" not in schema and "$ref" not in json.dumps(schema)
    schema, hoisted = model_schema(Node, "node")
    assert schema == {"$ref": "#/$defs/nbschema.node.Node"} and list(hoisted) == [
        "nbschema.node.Node"
    ]


def test_registry_refuses_duplicates_naming_both() -> None:
    models = registry()
    models.add("point", Point)  # the same model again is fine

    class Other(BaseModel):
        x: int

    with pytest.raises(ConfigError) as caught:
        models.add("point", Other, source="entry point other = other:MODELS of other 1.0")
    assert caught.value.message == (
        f"nbschema alias 'point' is defined twice: by {__name__}:Point (registry.add) "
        "and by entry point other = other:MODELS of other 1.0"
    )
    with pytest.raises(ConfigError, match="not a plain name"):
        models.add("a b", Point)
    with pytest.raises(ConfigError, match="not a pydantic model class"):
        models.add("x", dict)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="unknown nbschema alias 'zzz'"):
        models.get("zzz")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Installs a fake distribution offering ``nbplane.nbschema`` entry points."""

    def install(dist: str, module: str, source: str, entry_points: dict[str, str]) -> None:
        site = tmp_path / f"site-{dist}"
        site.mkdir()
        (site / f"{module}.py").write_text(source, encoding="utf-8")
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[nbplane.nbschema]\n{lines}")
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)

    return install


PLUGIN = """
from pydantic import BaseModel

class Customer(BaseModel):
    name: str

MODELS = {"plugin_customer": Customer}

def models():
    return {"plugin_customer_2": Customer}
"""


def test_entry_points_offer_models(plugin: Any) -> None:
    plugin(
        "nbplane-fake-one",
        "nbplane_fake_one",
        PLUGIN,
        {"a": "nbplane_fake_one:MODELS", "b": "nbplane_fake_one:models"},
    )
    models = ModelRegistry.from_entry_points()
    assert {"plugin_customer", "plugin_customer_2"} <= set(models.aliases())
    assert models.get("plugin_customer").__name__ == "Customer"
    assert models.target("plugin_customer") == "nbplane_fake_one:Customer"
    # what a kernel does with a model parameter, by import path or by entry point
    assert load_model("plugin_customer", "nbplane_fake_one:Customer") is models.get(
        "plugin_customer"
    )
    assert load_model("plugin_customer_2", "not_a_module:Nope").__name__ == "Customer"
    with pytest.raises(ContractError, match="not available in this kernel"):
        load_model("plugin_nobody")


def test_entry_point_problems_are_named(plugin: Any) -> None:
    plugin(
        "nbplane-fake-two",
        "nbplane_fake_two",
        PLUGIN + "\nBROKEN = 3\n",
        {"dup": "nbplane_fake_two:MODELS", "dup2": "nbplane_fake_two:MODELS"},
    )
    # the same model under the same alias twice is fine
    assert "plugin_customer" in ModelRegistry.from_entry_points()
    plugin(
        "nbplane-fake-three",
        "nbplane_fake_three",
        PLUGIN.replace("Customer", "Client"),
        {"other": "nbplane_fake_three:MODELS"},
    )
    with pytest.raises(ConfigError) as caught:
        ModelRegistry.from_entry_points()
    assert "nbschema alias 'plugin_customer' is defined twice: by entry point dup" in str(
        caught.value
    )
    assert "and by entry point other = nbplane_fake_three:MODELS of nbplane-fake-three" in str(
        caught.value
    )


def test_entry_point_that_fails_to_load(plugin: Any) -> None:
    plugin(
        "nbplane-fake-four",
        "nbplane_fake_four",
        "raise RuntimeError('boom')\n",
        {"bad": "nbplane_fake_four:MODELS"},
    )
    with pytest.raises(
        ConfigError,
        match=r"nbschema entry point bad = nbplane_fake_four:MODELS "
        r"of nbplane-fake-four 0.1 failed to load: "
        r"RuntimeError: boom",
    ):
        ModelRegistry.from_entry_points()


# --- validation --------------------------------------------------------------------------------

ORDERS = {
    "input": {
        "type": "object",
        "properties": {
            "customer_name": {"type": "string", "minLength": 2},
            "orders": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["id"],
                },
            },
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
            "point": {"$ref": "nbschema://point"},
        },
        "required": ["customer_name", "orders"],
    },
    "output": ANALYSIS["output"],
}


def test_input_errors_are_all_reported_with_pointers(tmp_path: Path) -> None:
    api = api_for(tmp_path, ORDERS)
    good = {
        "customer_name": "acme",
        "orders": [{"id": 1, "tags": ["x"]}],
        "when": "2024-05-01T10:00:00Z",
        "email": "a@b.c",
        "point": {"x": 1},
    }
    assert validate_input(api, good) == good
    with pytest.raises(InvalidInput) as caught:
        validate_input(
            api,
            {
                "orders": [{"id": 1}, {"id": "2", "tags": ["ok", 3]}, {}],
                "when": "yesterday",
                "email": "nobody",
                "point": {"x": "one"},
            },
        )
    error = caught.value
    assert error.fields["notebook"] == "api"
    assert sorted(error.fields["errors"], key=lambda e: e["pointer"]) == sorted(
        [
            {"pointer": "/orders/1/id", "message": "'2' is not of type 'integer'"},
            {"pointer": "/orders/1/tags/1", "message": "3 is not of type 'string'"},
            {"pointer": "/orders/2/id", "message": "'id' is a required property"},
            {"pointer": "/when", "message": "'yesterday' is not a 'date-time'"},
            {"pointer": "/email", "message": "'nobody' is not a 'email'"},
            {"pointer": "/point/x", "message": "'one' is not of type 'integer'"},
            {"pointer": "/customer_name", "message": "'customer_name' is a required property"},
        ],
        key=lambda e: e["pointer"],
    )
    assert error.message.startswith("invalid parameters: ") and "(and 2 more)" in error.message
    assert error.to_dict()["error"] == "InvalidInput"
    from nbplane.server.errors import status_of

    assert status_of(error) == 422


def test_pointers_are_escaped(tmp_path: Path) -> None:
    contract = {
        "input": {"type": "object", "additionalProperties": {"type": "integer"}},
        "output": {},
    }
    api = api_for(tmp_path, contract)
    with pytest.raises(InvalidInput) as caught:
        validate_input(api, {"ok": "x", "a/b~c": 1})
    assert caught.value.fields["errors"] == [
        {"pointer": "/a~1b~0c", "message": "parameter name 'a/b~c': not a Python identifier"},
        {"pointer": "/ok", "message": "'x' is not of type 'integer'"},
    ]


def test_model_validators_run_before_queueing(tmp_path: Path) -> None:
    api = api_for(tmp_path, ORDERS)
    with pytest.raises(InvalidInput) as caught:
        validate_input(api, {"customer_name": "acme", "orders": [], "point": {"x": -1}})
    assert caught.value.fields["errors"] == [
        {"pointer": "/point/x", "message": "Value error, x must not be negative"}
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("z=0\nimport os", "not a Python identifier"),
        ("__import__('os')", "not a Python identifier"),
        ("__class__", "names starting with '__' are reserved"),
        ("class", "a Python keyword"),
        ("None", "a Python keyword"),
        ("", "not a Python identifier"),
        ("1a", "not a Python identifier"),
        ("ﬁle", "not in Unicode NFKC form"),
    ],
)
def test_parameter_names_must_be_plain_identifiers(tmp_path: Path, name: str, problem: str) -> None:
    api = api_for(tmp_path, {"input": {"type": "object", "properties": {"fine": {}}}, "output": {}})
    with pytest.raises(InvalidInput) as caught:
        validate_input(api, {name: 1, "fine": 2})
    (error,) = caught.value.fields["errors"]
    assert error["pointer"] == "/" + name and problem in error["message"]
    with pytest.raises(InvalidInput):
        parameters_source({name: 1}, {})


def test_undeclared_parameters_are_refused_by_name_never_echoing_values(tmp_path: Path) -> None:
    api = api_for(tmp_path, ANALYSIS)
    with pytest.raises(InvalidInput) as caught:
        validate_input(api, {"customer_name": "acme", "alice_api_key": "s3cret", "zz": 1})
    error = caught.value
    assert error.fields["field"] == "parameters.alice_api_key"
    assert error.fields["errors"] == [
        {"pointer": "/alice_api_key", "message": "not declared by the input contract"},
        {"pointer": "/zz", "message": "not declared by the input contract"},
    ]
    assert "s3cret" not in json.dumps(error.to_dict())
    assert validate_input(api, {"customer_name": "acme"}) == {"customer_name": "acme"}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "additionalProperties": True},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "unevaluatedProperties": {"type": "string"}},
        {"type": "object", "patternProperties": {"^extra_": {"type": "string"}}},
        {"allOf": [{"properties": {"extra_key": {"type": "string"}}}]},
        {"$ref": "#/$defs/in", "$defs": {"in": {"properties": {"extra_key": {}}}}},
    ],
    ids=["additional", "additional-schema", "unevaluated", "pattern", "allOf", "ref"],
)
def test_schemas_may_declare_or_allow_more_names(tmp_path: Path, schema: dict[str, Any]) -> None:
    api = api_for(tmp_path, {"input": schema, "output": {}})
    assert validate_input(api, {"extra_key": "v"}) == {"extra_key": "v"}
    closed = api_for(
        tmp_path, {"input": {"type": "object", "additionalProperties": False}, "output": {}}
    )
    with pytest.raises(InvalidInput, match="extra_key: not declared"):
        validate_input(closed, {"extra_key": "v"})


def test_model_parameters_are_declared(tmp_path: Path) -> None:
    api = api_for(tmp_path, {"input": {"$ref": "nbschema://point"}, "output": {}})
    assert validate_input(api, {"x": 1, "y": 2}) == {"x": 1, "y": 2}
    with pytest.raises(InvalidInput, match="/z: not declared"):
        validate_input(api, {"x": 1, "z": 2})


@pytest.mark.parametrize("parameters", [[], "x", None, 3])
def test_parameters_must_be_an_object(tmp_path: Path, parameters: Any) -> None:
    api = api_for(tmp_path, {"input": {}, "output": {}})
    with pytest.raises(InvalidInput, match="parameters must be a JSON object, found"):
        validate_input(api, parameters)


def test_output_is_checked_against_the_output_schema(tmp_path: Path) -> None:
    api = api_for(tmp_path, ORDERS)
    validate_output(api, {"needs_discount": False})
    with pytest.raises(InvalidOutput) as caught:
        validate_output(api, {"needs_discount": "yes"})
    assert caught.value.fields["errors"] == [
        {"pointer": "/needs_discount", "message": "'yes' is not of type 'boolean'"}
    ]
    assert caught.value.message == "/needs_discount: 'yes' is not of type 'boolean'"
    with pytest.raises(InvalidOutput, match=r"no output was saved \(call nbplane.save_output"):
        validate_output(api, None)
    anything = api_for(tmp_path, {"input": {}, "output": {}})
    validate_output(anything, None)


def test_schema_dialect_follows_dollar_schema(tmp_path: Path) -> None:
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}},
    }
    api = api_for(tmp_path, {"input": draft4, "output": {}})
    validate_input(api, {"n": 4})
    with pytest.raises(InvalidInput, match="greater than or equal to the maximum of 5"):
        validate_input(api, {"n": 5})


# --- parameter injection -------------------------------------------------------------------------

NASTY_VALUES: list[Any] = [
    "'); import os; ('",
    '"); import os; ("',
    "\\\\'\n",
    "'''\"\"\"\\",
    "\n# comment\nimport os",
    "ünïcødé ✓ 中文 \u2028 \u2029 \x00 \x1b[31m",
    "\ud800 lone surrogate",
    "x" * 3_000_000,
    {"nested": ["'", '"', "\\", {"$ref": "nbschema://point"}]},
    [1, 2.5, None, True, False, -0.0, 10**30],
    "}, 'parameters': {'os': 1}}",
]


def bound(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    namespace.pop("__builtins__")
    return namespace


def payload_literal(source: str) -> str:
    """The one string constant that carries the parameters."""
    constants = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith('{"parameters"')
    ]
    assert len(constants) == 1
    return constants[0]


@pytest.mark.parametrize("value", NASTY_VALUES, ids=range(len(NASTY_VALUES)))
def test_values_arrive_as_data(value: Any) -> None:
    parameters = {"value": value, "text": "plain", "globals": 1}
    source = parameters_source(parameters, {})
    source.encode("utf-8")  # a notebook cell must be valid UTF-8
    assert bound(source) == parameters
    assert json.loads(payload_literal(source))["parameters"] == parameters
    # the code is the same whatever the parameters: only the one literal differs
    empty = parameters_source({}, {})
    assert source.replace(repr(payload_literal(source)), "P") == empty.replace(
        repr(payload_literal(empty)), "P"
    )


@pytest.mark.parametrize(
    "name",
    ["z=0\nimport os", "__import__('os')", "a; import os", "os\n", "__builtins__", "print(1)#"],
)
def test_bad_names_are_refused_before_generation(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parameters_source({name: 1}, {})
    assert caught.value.fields["errors"][0]["message"].startswith("parameter name")


def test_the_kernel_checks_names_again() -> None:
    source = parameters_source({"ok": 1}, {})
    tampered = source.replace('"ok"', '"z=0\\\\nimport os"')
    assert tampered != source
    namespace: dict[str, Any] = {}
    with pytest.raises(ValueError, match="nbplane: refused parameter name 'z=0\\\\nimport os'"):
        exec(tampered, namespace)
    assert set(namespace) == {"__builtins__"}  # nothing bound, the helper removed


def test_model_parameters_are_rebuilt_in_the_kernel() -> None:
    parameters = {
        "origin": {"x": 1, "y": 2},
        "points": [{"x": 3}, {"x": 4}],
        "none": None,
        "plain": {"x": 5},
    }
    source = parameters_source(
        parameters,
        {"origin": "point", "points": "point[]", "none": "point", "missing": "point"},
        {"point": f"{__name__}:Point"},
    )
    namespace = bound(source)
    assert namespace == {
        "origin": Point(x=1, y=2),
        "points": [Point(x=3), Point(x=4)],
        "none": None,
        "plain": {"x": 5},
    }


SHOWN_VALUES = [v for v in NASTY_VALUES if len(json.dumps(v)) < DISPLAY_LIMIT]


@pytest.mark.parametrize("value", SHOWN_VALUES, ids=range(len(SHOWN_VALUES)))
def test_the_displayed_cell_holds_the_values(value: Any) -> None:
    """papermill's cell: one ``name = literal`` line per parameter whose literal is the value
    (run here only to prove it: nbplane never runs this text)."""
    parameters = {"value": value, "text": "plain", "globals": 1}
    shown = parameters_display(parameters, {})
    shown.encode("utf-8")
    assert shown.startswith("# Parameters\nvalue = ")
    assert len(shown.splitlines()) == 1 + len(parameters)  # no value adds a line
    tree = ast.parse(shown)
    assert all(isinstance(node, ast.Assign) for node in tree.body)  # assignments, nothing else
    assert bound(shown) == parameters
    assert shown.splitlines()[2] == 'text = "plain"'


def test_the_displayed_cell_reads_like_papermill() -> None:
    parameters = {
        "x": 3,
        "name": "a",
        "quote": 'say "hi"',
        "ratio": 0.5,
        "flags": [True, False, None],
        "point": {"x": 1, "y": 2},
        "points": [{"x": 3}],
        "nan": float("nan"),
        "big": list(range(1000)),
        "long": "y" * 5000,
        "empty": {},
    }
    shown = parameters_display(parameters, {"point": "point", "points": "point[]"})
    assert shown.splitlines() == [
        "# Parameters",
        "x = 3",
        'name = "a"',
        "quote = 'say \"hi\"'",
        "ratio = 0.5",
        "flags = [True, False, None]",
        'point = {"x": 1, "y": 2}  # a point model',
        'points = [{"x": 3}]  # a list of point models',
        'nan = float("nan")',
        "big = ...  # a list of 1,000 items, too long to show here (the notebook got all of it)",
        "long = ...  # a string of 5,000 characters, too long to show here (the notebook got all"
        " of it)",
        "empty = {}",
    ]
    namespace = bound(shown.replace("...", "None"))
    assert namespace["quote"] == 'say "hi"' and namespace["flags"] == [True, False, None]
    deep: Any = 0
    for _ in range(10_000):  # nesting far deeper than the room: abbreviated, no RecursionError
        deep = [deep]
    shown = parameters_display({"deep": deep}, {})
    assert shown.endswith("a list of 1 item, too long to show here (the notebook got all of it)")


@pytest.mark.parametrize(
    "name",
    ["z=0\nimport os", "__import__('os')", "a; import os", "print(1)#"],
)
def test_the_displayed_cell_refuses_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        parameters_display({name: 1}, {})


def test_prepare_injects_after_the_parameters_cell(tmp_path: Path) -> None:
    api = api_for(
        tmp_path,
        {**ORDERS, "input": {**ORDERS["input"], "required": []}},
        [("import math", []), ("customer_name = 'x'", ["parameters"]), ("y = 1", [])],
    )
    injected = api.parameters_cell({"customer_name": "acme", "point": {"x": 2}})
    assert injected.after == 1
    assert bound(injected.source) == {"customer_name": "acme", "point": Point(x=2)}
    assert injected.display == (
        '# Parameters\ncustomer_name = "acme"\npoint = {"x": 2}  # a point model'
    )


def test_inject_position() -> None:
    def notebook(*tags: list[str]) -> dict[str, Any]:
        return {
            "cells": [{"cell_type": "code", "source": "", "metadata": {"tags": t}} for t in tags]
        }

    assert inject_position(notebook([], ["x"], ["parameters"], ["parameters"])) == 2
    assert inject_position(notebook(["parameters", "step"])) == 0
    assert inject_position(notebook([], [])) == -1
    assert inject_position({"cells": []}) == -1


# --- save_output ---------------------------------------------------------------------------------


def test_outputs_become_json_data() -> None:
    sample = Sample(foo="f", start_time=datetime(2021, 2, 28, 4, 9, 9), where=Point(x=1))
    assert to_json_data({"a": [1, 2.5, "s", None, True, (3, 4)], "m": sample}) == {
        "a": [1, 2.5, "s", None, True, [3, 4]],
        "m": {"foo": "f", "start_time": "2021-02-28T04:09:09", "where": {"x": 1, "y": 0}},
    }
    assert to_json_data(Point(x=3)) == {"x": 3, "y": 0}


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (
            {"rows": [1, object()]},
            TypeError,
            "save_output: object at /rows/1 is not JSON-serializable",
        ),
        ({"when": datetime(2020, 1, 1)}, TypeError, "datetime.datetime at /when is not JSON"),
        ({1: "x"}, TypeError, "JSON object keys are strings; the key 1 at / is int"),
        ({"x": float("nan")}, ValueError, "nan at /x is not valid JSON"),
        ({1, 2}, TypeError, "set at / is not JSON-serializable"),
    ],
)
def test_outputs_that_are_not_json_are_refused(
    value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_json_data(value)


def test_cyclic_outputs_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        to_json_data(loop)


def test_importing_save_output_stays_light() -> None:
    code = (
        "import sys; from nbplane import save_output; from nbplane.apis.output import "
        "OUTPUT_MIMETYPE; print(OUTPUT_MIMETYPE, sorted(m for m in ('IPython', 'sqlalchemy', "
        "'pydantic', 'jsonschema') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [OUTPUT_MIMETYPE, "[]"]


def test_errors_are_nbplane_errors() -> None:
    assert issubclass(InvalidInput, NbplaneError) and issubclass(InvalidOutput, NbplaneError)
    assert issubclass(ContractError, Conflict)
