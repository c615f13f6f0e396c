"""The session launcher extension point: start a user's Jupyter server somewhere, say how it is
doing, hibernate it (files kept), stop it, read its logs.

The session service owns everything around these hooks: who may do what, the record in the
database, progress events, culling, reconciliation after a restart. A launcher only turns a
:class:`SessionSpec` into a running Jupyter server and back; what it needs to find that server
again (a process id, a StatefulSet name) is the ``state`` dict it returns, kept in the session's
row, so a restarted server can poll and stop what an earlier one started.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, ClassVar

from nbplane.errors import InvalidInput
from nbplane.settings import Settings


@dataclass(frozen=True)
class SessionSpec:
    """What a launcher needs to start (or resume) one session's Jupyter server."""

    id: str
    """The session's id; it also names the workspace, so resuming finds the same files."""
    user: str
    resource_class: str
    cpu: str | None
    """CPU request and limit, Kubernetes notation ("500m", "2"); None: no limit."""
    memory: str | None
    """Memory request and limit ("1Gi"); None: no limit."""
    image: str | None
    """Container image (Kubernetes launcher); None: the launcher's default."""
    token: str
    """The Jupyter server's own access token: whoever has it can use the server."""
    environment: dict[str, str] = field(default_factory=dict)
    """Variables for the server and its kernels: the user's own, granted connections,
    NBPLANE_URL and NBPLANE_TOKEN. They hold credentials: pass them secretly (a Secret, a
    file of mode 0600), never on a command line or in a label."""
    directory: str | None = None
    """A directory, relative to the workspace, to open first (a job or project)."""
    repository: str | None = None
    """A git repository cloned into the workspace on first start."""
    commit: str | None = None
    """The commit (or branch, tag) of ``repository`` to check out."""


def check_spec(spec: SessionSpec) -> None:
    """Refuse, naming the field, what a launcher's server would take the wrong way: a commit
    git reads as an option, a directory outside the workspace."""
    if spec.commit is not None and spec.commit.startswith("-"):
        raise InvalidInput("commit: must not start with '-'", field="commit")
    if spec.directory is not None:
        path = PurePosixPath(spec.directory)
        if path.is_absolute() or ".." in path.parts:
            raise InvalidInput(
                f"directory: {spec.directory!r} must be a path inside the workspace",
                field="directory",
            )


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class LaunchStep:
    """One step of bringing a server up (e.g. "workspace", "image", "server", "ready")."""

    name: str
    status: StepStatus
    detail: str | None = None


class LaunchPhase(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    """Not running and not failing: hibernated, stopped, or never started."""
    FAILED = "failed"


@dataclass(frozen=True)
class LaunchStatus:
    """How a session's server is doing, as its launcher sees it."""

    phase: LaunchPhase
    url: str | None = None
    """Where the Jupyter server answers, without the token (e.g. http://127.0.0.1:8931/)."""
    ready: bool = False
    """The server answers its own API (``/api/status`` with the token)."""
    steps: list[LaunchStep] = field(default_factory=list)
    reason: str | None = None
    """Why it failed or stopped, in words for the user."""


class SessionLauncher(ABC):
    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def new_id(self) -> str:
        """The id of a new session; a launcher with servers started ahead of time gives the
        id one of them was started for (a server's base URL, ``/sessions/{id}/``, names it)."""
        return secrets.token_hex(8)

    async def prepare(self) -> None:  # noqa: B027 - a launcher may have nothing to warm up
        """Called once when the server starts: e.g. fill a pool of servers started ahead."""

    @abstractmethod
    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        """Start (or resume) the server, without waiting for it to be ready; returns the state
        ``poll``, ``hibernate``, ``stop`` and ``logs`` need."""

    @abstractmethod
    async def poll(self, spec: SessionSpec, state: dict[str, Any]) -> LaunchStatus:
        """How it is doing now; cheap enough to call every second for each session."""

    @abstractmethod
    async def hibernate(self, spec: SessionSpec, state: dict[str, Any]) -> dict[str, Any]:
        """Stop the server, keep the workspace; returns the state ``start`` resumes from."""

    @abstractmethod
    async def stop(self, spec: SessionSpec, state: dict[str, Any], *, purge: bool) -> None:
        """Stop it for good; with ``purge`` also delete the workspace. No error if gone."""

    @abstractmethod
    async def logs(self, spec: SessionSpec, state: dict[str, Any], tail: int) -> str:
        """The server's last ``tail`` lines of output, also after it failed."""

    async def check_image(self, image: str) -> None:  # noqa: B027 - local runs no images
        """Raise ``InvalidInput`` naming the field ``image`` if the image cannot be used."""

    async def close(self) -> None:  # noqa: B027 - most launchers hold nothing to release
        """Release clients, stop pooled servers."""
