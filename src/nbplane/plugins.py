"""One loader for nbplane's extension points: job executors, session launchers and API engines.

An implementation is picked by name, as JupyterHub picks spawners: a short name registered as an
entry point of the extension point's group (nbplane's own are declared in ``pyproject.toml``, a
plugin package declares its own), or ``package.module:Class`` for a class nobody registered.
The class is imported only when chosen, so a laptop never imports the Kubernetes client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from nbplane.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class ExtensionPoint(Generic[T]):
    """A kind of implementation: its entry-point group, base class and the setting naming it."""

    group: str
    base: type[Any]
    """The class implementations derive from (abstract, so typed loosely: ``T`` is the check)."""
    noun: str
    field: str

    def names(self) -> list[str]:
        """The registered short names, sorted: what an error message offers."""
        return sorted({point.name for point in entry_points(group=self.group)})

    def load(self, name: str) -> type[T]:
        """The class called ``name``; a ``ConfigError`` naming the setting when there is none."""
        registered = [point for point in entry_points(group=self.group) if point.name == name]
        if not registered and ":" not in name:
            raise ConfigError(
                f"unknown {self.noun} {name!r}; choose one of {', '.join(self.names())} "
                "or name a class as package.module:Class",
                field=self.field,
            )
        target = registered[0].value if registered else name
        module, _, attribute = target.partition(":")
        try:
            loaded = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"cannot load {self.noun} {name!r}: {exc}", field=self.field
            ) from None
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            raise ConfigError(
                f"{self.noun} {name!r} is {target}, which is not a {self.base.__name__}",
                field=self.field,
            )
        implementation: type[T] = loaded
        return implementation
