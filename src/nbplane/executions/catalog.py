"""The notebooks a server offers as APIs, read from its notebooks directory."""

from __future__ import annotations

import threading
from pathlib import Path

from nbplane.errors import Conflict, NotFound
from nbplane.notebooks.contracts import ModelRegistry, NotebookApi, discover_apis


class ApiCatalog:
    """Every ``<name>.ipynb`` with a ``<name>.config.json``; rescanned when a name is unknown,
    so a notebook added while the server runs is found without a restart."""

    def __init__(self, directory: Path, registry: ModelRegistry | None = None) -> None:
        self.directory = directory
        self.registry = registry or ModelRegistry.from_entry_points()
        self._lock = threading.Lock()
        self._apis = discover_apis(directory, self.registry)

    def refresh(self) -> None:
        apis = discover_apis(self.directory, self.registry)
        with self._lock:
            self._apis = apis

    def all(self) -> list[NotebookApi]:
        with self._lock:
            return sorted(self._apis.values(), key=lambda api: api.name)

    def find(self, name: str) -> NotebookApi | None:
        with self._lock:
            api = self._apis.get(name)
        if api is None:
            self.refresh()
            with self._lock:
                api = self._apis.get(name)
        return api

    def usable(self, name: str) -> NotebookApi:
        """The API by name, or the error a caller should see."""
        api = self.find(name)
        if api is None:
            raise NotFound(f"no notebook API named {name!r}", field="notebook", notebook=name)
        if api.broken or api.contract is None:
            raise Conflict(
                f"notebook {name!r} is broken: {api.broken}", field="notebook", notebook=name
            )
        return api
