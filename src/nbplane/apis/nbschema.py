"""Pydantic models shared by contracts: ``{"$ref": "nbschema://alias"}`` in a JSON Schema.

Packages offer models through the entry point group ``nbplane.nbschema``; each entry point loads
a ``dict[str, type[BaseModel]]`` (alias -> model) or a callable returning one::

    [project.entry-points."nbplane.nbschema"]
    sales = "sales_models:MODELS"

A server resolves the references in a contract to the models' JSON Schemas (inlined where the
model is not recursive, else under the contract's ``$defs``). A kernel rebuilds model parameters
with :func:`load_model`; this module imports neither jsonschema nor IPython, so kernels load it
quickly.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from pydantic import BaseModel

from nbplane.errors import ConfigError, ContractError

ENTRY_POINT_GROUP = "nbplane.nbschema"
SCHEME = "nbschema://"
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""Aliases are plain names, so they are safe in JSON pointers, ``$defs`` keys and messages."""

SchemaMode = Literal["validation", "serialization"]

# Keywords whose values are data (never schemas), and keywords whose values map names to schemas.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
_NAME_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
    }
)


class ModelRegistry:
    """Aliases of the pydantic models that contracts may reference as ``nbschema://alias``."""

    def __init__(self) -> None:
        self._models: dict[str, type[BaseModel]] = {}
        self._sources: dict[str, str] = {}

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> ModelRegistry:
        """Every alias offered by installed packages; a duplicate alias or a broken entry point
        is a :class:`ConfigError` naming it."""
        registry = cls()
        for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
            for alias, model in _load_entry_point(entry_point).items():
                registry.add(alias, model, source=_describe_entry_point(entry_point))
        return registry

    def add(self, alias: str, model: type[BaseModel], *, source: str | None = None) -> None:
        """Register ``model`` as ``nbschema://alias``; ``source`` says where it came from."""
        if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
            raise ConfigError(
                f"nbschema alias {alias!r} is not a plain name (letters, digits, _ . -)",
                field="alias",
            )
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(
                f"nbschema alias {alias!r}: {model!r} is not a pydantic model class",
                field="alias",
                alias=alias,
            )
        source = source or f"{model_target(model) or model.__qualname__} (registry.add)"
        known = self._models.get(alias)
        if known is not None and known is not model:
            raise ConfigError(
                f"nbschema alias {alias!r} is defined twice: by {self._sources[alias]} "
                f"and by {source}",
                field="alias",
                alias=alias,
            )
        self._models[alias] = model
        self._sources[alias] = source

    def get(self, alias: str) -> type[BaseModel]:
        model = self._models.get(alias)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none registered"
            raise ContractError(
                f"unknown nbschema alias {alias!r} (known: {known})", field="alias", alias=alias
            )
        return model

    def aliases(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, alias: object) -> bool:
        return alias in self._models

    def target(self, alias: str) -> str | None:
        """``module:qualname`` a kernel can import the model by, when there is one."""
        return model_target(self.get(alias))


def model_target(model: type[BaseModel]) -> str | None:
    """The import path of a model class, or None when it cannot be imported by name."""
    module, qualname = model.__module__, model.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        return None
    return f"{module}:{qualname}"


def _describe_entry_point(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    owner = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value}{owner}"


def _load_entry_point(entry_point: EntryPoint) -> dict[str, type[BaseModel]]:
    where = _describe_entry_point(entry_point)
    try:
        loaded = entry_point.load()
        models = loaded() if callable(loaded) and not isinstance(loaded, Mapping) else loaded
    except Exception as exc:  # a plugin may raise anything while importing
        raise ConfigError(
            f"nbschema {where} failed to load: {type(exc).__name__}: {exc}", field="entry_point"
        ) from exc
    if not isinstance(models, Mapping):
        raise ConfigError(
            f"nbschema {where} gave {type(models).__name__}, expected a dict of alias -> model",
            field="entry_point",
        )
    return dict(models)


_kernel_models: dict[str, type[BaseModel]] = {}


def load_model(alias: str, target: str | None = None) -> type[BaseModel]:
    """The model for ``alias`` inside a kernel: imported from ``target`` (``module:qualname``)
    when given, else from the installed entry points (rescanned when the alias is new)."""
    if target:
        model = _import_model(target)
        if model is not None:
            return model
    if alias not in _kernel_models:
        registry = ModelRegistry.from_entry_points()
        _kernel_models.update({name: registry.get(name) for name in registry.aliases()})
    model = _kernel_models.get(alias)
    if model is None:
        raise ContractError(
            f"nbschema alias {alias!r} is not available in this kernel: install the package "
            f"that provides it{f' ({target})' if target else ''} in the kernel's environment",
            field="alias",
            alias=alias,
        )
    return model


def _import_model(target: str) -> type[BaseModel] | None:
    module_name, _, qualname = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


# --- JSON Schema walking -------------------------------------------------------------------


def _transform(
    node: Any, on_ref: Callable[[dict[str, Any], str], Any | None], base: str = ""
) -> Any:
    """A copy of a schema where ``on_ref(node, path)`` may replace any node holding a string
    ``$ref``; data keywords (``const``, ``enum``, ``default``, ``examples``) are left alone."""

    def walk(node: Any, path: str, names: bool) -> Any:
        if isinstance(node, list):
            return [walk(item, f"{path}/{index}", False) for index, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        if not names and isinstance(node.get("$ref"), str):
            replaced = on_ref(node, path)
            if replaced is not None:
                return replaced
        copy: dict[str, Any] = {}
        for key, value in node.items():
            child = f"{path}/{escape_pointer(str(key))}"
            if names:
                copy[key] = walk(value, child, False)
            elif key in _DATA_KEYWORDS:
                copy[key] = value
            else:
                copy[key] = walk(value, child, key in _NAME_MAPS)
        return copy

    return walk(node, base, False)


def iter_refs(schema: Any) -> Iterator[tuple[str, str]]:
    """Every ``$ref`` of a schema with the JSON pointer of the node holding it."""

    def walk(node: Any, path: str, names: bool) -> Iterator[tuple[str, str]]:
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}/{index}", False)
            return
        if not isinstance(node, dict):
            return
        if not names and isinstance(node.get("$ref"), str):
            yield path, node["$ref"]
        for key, value in node.items():
            child = f"{path}/{escape_pointer(str(key))}"
            if names:
                yield from walk(value, child, False)
            elif key not in _DATA_KEYWORDS:
                yield from walk(value, child, key in _NAME_MAPS)

    yield from walk(schema, "", False)


def escape_pointer(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _merge(target: Any, siblings: dict[str, Any]) -> Any:
    """``target`` with the keywords that stood beside its ``$ref``; ``allOf`` when they clash."""
    if not siblings:
        return target
    if not isinstance(target, dict):
        return {"allOf": [target], **siblings}
    clash = {key for key in siblings if key in target and key not in _ANNOTATIONS}
    if clash:
        return {"allOf": [target], **siblings}
    return {**target, **siblings}


class _Recursive(Exception):
    pass


def model_schema(
    model: type[BaseModel], alias: str, mode: SchemaMode = "validation"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's JSON Schema and the ``$defs`` it needs at the document root: none when the
    model is not recursive (every definition inlined), else its definitions under
    ``nbschema.<alias>.<Name>``."""
    try:
        raw = model.model_json_schema(mode=mode)
    except Exception as exc:  # pydantic raises several types for models it cannot describe
        raise ContractError(
            f"nbschema model {alias!r} ({model.__qualname__}) has no JSON Schema: {exc}",
            field="alias",
            alias=alias,
        ) from None
    definitions: dict[str, Any] = raw.pop("$defs", {})
    prefix = "#/$defs/"

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        def on_ref(ref_node: dict[str, Any], _: str) -> Any | None:
            ref = ref_node["$ref"]
            if not ref.startswith(prefix) or ref[len(prefix) :] not in definitions:
                return None
            name = ref[len(prefix) :]
            if name in stack:
                raise _Recursive
            siblings = {k: v for k, v in ref_node.items() if k != "$ref"}
            return _merge(inline(definitions[name], (*stack, name)), inline(siblings, stack))

        return _transform(node, on_ref)

    try:
        return inline(raw, ()), {}
    except _Recursive:
        pass

    def rename(node: Any) -> Any:
        def on_ref(ref_node: dict[str, Any], _: str) -> Any | None:
            ref = ref_node["$ref"]
            if not ref.startswith(prefix) or ref[len(prefix) :] not in definitions:
                return None
            rest = rename({k: v for k, v in ref_node.items() if k != "$ref"})
            return {"$ref": f"{prefix}nbschema.{alias}.{ref[len(prefix) :]}", **rest}

        return _transform(node, on_ref)

    hoisted = {f"nbschema.{alias}.{name}": rename(value) for name, value in definitions.items()}
    return rename(raw), hoisted


def resolve(
    schema: dict[str, Any], registry: ModelRegistry, mode: SchemaMode = "validation"
) -> tuple[dict[str, Any], set[str]]:
    """``schema`` with every ``$ref: "nbschema://alias"`` replaced by the model's JSON Schema,
    and the aliases used. An unknown alias is a :class:`ContractError` naming its place."""
    used: set[str] = set()
    hoisted: dict[str, Any] = {}
    cache: dict[str, dict[str, Any]] = {}

    def on_ref(node: dict[str, Any], path: str) -> Any | None:
        ref: str = node["$ref"]
        if not ref.startswith(SCHEME):
            return None
        alias = ref[len(SCHEME) :]
        if alias not in registry:
            known = ", ".join(registry.aliases()) or "none registered"
            raise ContractError(
                f"unknown nbschema alias {alias!r} at {path or '/'}/$ref (known: {known})",
                field="alias",
                alias=alias,
                pointer=f"{path}/$ref",
            )
        used.add(alias)
        if alias not in cache:
            cache[alias], definitions = model_schema(registry.get(alias), alias, mode)
            hoisted.update(definitions)
        siblings = _transform({k: v for k, v in node.items() if k != "$ref"}, on_ref, path)
        return _merge(copy.deepcopy(cache[alias]), siblings)

    resolved = _transform(schema, on_ref)
    if hoisted:
        existing = resolved.get("$defs", {})
        clash = sorted(set(existing) & set(hoisted)) if isinstance(existing, dict) else []
        if clash:
            raise ContractError(f"$defs/{clash[0]} is reserved for nbschema models", field="$defs")
        resolved["$defs"] = {**(existing if isinstance(existing, dict) else {}), **hoisted}
    return resolved, used


def alias_of(node: Any) -> str | None:
    """The alias when ``node`` is an ``nbschema://`` reference, else None."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if ref.startswith(SCHEME):
            return ref[len(SCHEME) :]
    return None
