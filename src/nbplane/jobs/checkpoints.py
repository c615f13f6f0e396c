"""Checkpoints of a notebook's namespace, so a resumed run can skip the steps before."""

from __future__ import annotations

import pickle
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

HIDDEN_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "job_input", "_exit_code"})


@dataclass
class Checkpoint:
    blob: bytes
    unpicklable: dict[str, str] = field(default_factory=dict)
    """Names left out because their values cannot be serialized, with their types."""


def take_checkpoint(variables: dict[str, Any]) -> Checkpoint:
    """Serialize the namespace whole (keeping shared references) or, failing that, name by name.
    cloudpickle is imported here, after a step ran, not before the first one."""
    import cloudpickle

    try:
        return Checkpoint(cloudpickle.dumps(variables))
    except Exception:
        pass
    kept: dict[str, Any] = {}
    unpicklable: dict[str, str] = {}
    for name, value in variables.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            unpicklable[name] = f"{type(value).__module__}.{type(value).__qualname__}"
        else:
            kept[name] = value
    return Checkpoint(cloudpickle.dumps(kept), unpicklable)


def user_variables(namespace: dict[str, Any], hidden: Container[str] = ()) -> dict[str, Any]:
    """The user's own names in a notebook's namespace (``hidden``: what its shell added): what a
    checkpoint keeps."""
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and name not in HIDDEN_NAMES and name not in hidden
    }


def restore_checkpoint(blob: bytes) -> dict[str, Any]:
    variables: dict[str, Any] = pickle.loads(blob)
    return variables


def changed_names(before: dict[str, int], after: dict[str, Any]) -> list[str]:
    """Names a step bound or rebound, from the identities of the values before it ran."""
    return sorted(name for name, value in after.items() if before.get(name) != id(value))


def identities(variables: dict[str, Any]) -> dict[str, int]:
    return {name: id(value) for name, value in variables.items()}
