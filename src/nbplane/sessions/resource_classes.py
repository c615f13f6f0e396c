"""The resource classes users choose from: NBPLANE_SESSION_RESOURCE_CLASSES, or small and large.

The file is a JSON list of objects ``{"name", "cpu", "memory", "description", "default",
"teams"}``; a class with ``teams`` is offered only to members of those teams (and admins).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from nbplane.auth.models import DescribeCaller
from nbplane.errors import ConfigError, InvalidInput
from nbplane.sessions.models import DescribeResourceClass

DEFAULT_CLASSES = [
    DescribeResourceClass(
        name="small", description="1 CPU, 2 GiB", cpu="1", memory="2Gi", default=True
    ),
    DescribeResourceClass(name="large", description="2 CPUs, 8 GiB", cpu="2", memory="8Gi"),
]
FIELD = "NBPLANE_SESSION_RESOURCE_CLASSES"


def load_resource_classes(path: Path | None) -> list[DescribeResourceClass]:
    """The configured classes; a file that cannot be used stops the server with its reason."""
    if path is None:
        return list(DEFAULT_CLASSES)
    try:
        found = TypeAdapter(list[DescribeResourceClass]).validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}", field=FIELD, file=str(path)) from None
    except ValidationError as exc:
        problem = "; ".join(
            f"{'/'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(
            f"{path} lists no valid resource classes: {problem}", field=FIELD, file=str(path)
        ) from None
    names = [described.name for described in found]
    if not found or len(set(names)) != len(names):
        raise ConfigError(
            f"{path} must list at least one class, each name once", field=FIELD, file=str(path)
        )
    if sum(described.default for described in found) > 1:
        raise ConfigError(f"{path} marks more than one class default", field=FIELD, file=str(path))
    return found


class ResourceClasses:
    def __init__(self, classes: list[DescribeResourceClass]) -> None:
        self.classes = classes

    def named(self, name: str) -> DescribeResourceClass | None:
        """The class a session was started with; None if it is no longer configured."""
        return next((described for described in self.classes if described.name == name), None)

    def offered(self, caller: DescribeCaller) -> list[DescribeResourceClass]:
        return [
            described
            for described in self.classes
            if not described.teams or caller.admin or set(described.teams) & set(caller.teams)
        ]

    def choose(self, caller: DescribeCaller, name: str | None) -> DescribeResourceClass:
        """The class called ``name`` if the caller may use it; None: the default (or first)."""
        offered = self.offered(caller)
        if name is None:
            if not offered:
                raise InvalidInput("no resource class is offered to you", field="resource_class")
            return next((described for described in offered if described.default), offered[0])
        for described in offered:
            if described.name == name:
                return described
        names = ", ".join(described.name for described in offered) or "none"
        raise InvalidInput(
            f"unknown resource class {name!r}; choose one of: {names}", field="resource_class"
        )
