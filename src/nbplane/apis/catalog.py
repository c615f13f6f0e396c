"""The notebooks a server offers as APIs, read from its notebooks directory."""

from __future__ import annotations

import threading
from pathlib import Path

from nbplane.apis.contract import NotebookApi, discover_apis
from nbplane.apis.nbschema import ModelRegistry
from nbplane.auth.models import DescribeCaller
from nbplane.errors import Conflict, NotFound


def open_to(api: NotebookApi, caller: DescribeCaller) -> bool:
    """Whether ``caller`` may see and call ``api``: its contract's ``teams`` (none: everyone);
    an API whose contract cannot be read shows only to admins, as its teams are unknown."""
    if caller.admin:
        return True
    if api.contract is None:
        return False
    teams = api.contract.teams
    return teams is None or bool(set(teams) & set(caller.teams))


def team_for(api: NotebookApi, caller: DescribeCaller) -> str | None:
    """The caller's team an execution of ``api`` is recorded for: the first (by name) of their
    teams that the API is open to, or None."""
    allowed = api.contract.teams if api.contract is not None else None
    return next((team for team in sorted(caller.teams) if allowed is None or team in allowed), None)


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

    def offered(self, caller: DescribeCaller) -> list[NotebookApi]:
        """The APIs ``caller`` may see, by name."""
        return [api for api in self.all() if open_to(api, caller)]

    def visible(self, name: str, caller: DescribeCaller | None) -> NotebookApi:
        """The API by name, broken or not, if ``caller`` may see it (None: a worker, which runs
        what was accepted); else "not found", so another team's API is not revealed to exist."""
        api = self.find(name)
        if api is None or (caller is not None and not open_to(api, caller)):
            raise NotFound(f"no notebook API named {name!r}", field="notebook", notebook=name)
        return api

    def usable(self, name: str, caller: DescribeCaller | None) -> NotebookApi:
        """The API by name if it can run and ``caller`` may see it, or the error to show."""
        api = self.visible(name, caller)
        if api.broken or api.contract is None:
            raise Conflict(
                f"notebook {name!r} is broken: {api.broken}", field="notebook", notebook=name
            )
        return api
