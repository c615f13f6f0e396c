"""What the sessions and connections API says and accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nbplane.jobs.models import UtcDatetime
from nbplane.sessions.launchers.base import StepStatus

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_ENV_PREFIXES = ("NBPLANE_", "JUPYTER")
"""Names a session's own variables may not take: nbplane and the Jupyter server set them."""
CONNECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Connection names: lowercase so that each maps to one environment variable prefix."""
CONNECTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class SessionStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    HIBERNATED = "hibernated"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """Nothing changes until someone acts (the end of a progress stream)."""
        return self in (SessionStatus.RUNNING, SessionStatus.HIBERNATED, SessionStatus.FAILED)


class CreateSession(BaseModel):
    """Body of ``POST /api/v1/sessions``."""

    model_config = ConfigDict(extra="forbid")

    resource_class: str | None = Field(
        default=None,
        description="A resource class of `GET /api/v1/sessions/resource-classes` (default: "
        "the one marked default).",
    )
    image: str | None = Field(
        default=None,
        max_length=1024,
        description="Container image (Kubernetes launcher; default: its image).",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for the server and its kernels; names of letters, digits and "
        "'_', not starting with NBPLANE_ or JUPYTER.",
    )
    directory: str | None = Field(
        default=None,
        max_length=1024,
        description="A directory of the workspace to open first (relative).",
    )
    repository: str | None = Field(
        default=None,
        max_length=1024,
        description="A git repository cloned into the workspace on first start.",
    )
    commit: str | None = Field(
        default=None,
        max_length=255,
        description="Commit, branch or tag of `repository` to check out.",
    )

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a valid variable name: letters, digits and '_', not "
                    "starting with a digit"
                )
            if name.upper().startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{name!r} is reserved: nbplane or Jupyter sets it")
        return value

    @field_validator("directory")
    @classmethod
    def _directory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(f"{value!r} must be a path inside the workspace, without '..'")
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str | None) -> str | None:
        if value is not None and not re.match(
            r"^(https?|ssh|git|file)://\S+$|^[\w.-]+@\S+:\S+$", value
        ):
            raise ValueError(f"{value!r} is not a git URL (https://, ssh://, git@host:path)")
        return value

    @model_validator(mode="after")
    def _commit_needs_repository(self) -> CreateSession:
        if self.commit is not None and self.repository is None:
            raise ValueError("commit needs a repository")
        return self


class DescribeSessionStep(BaseModel):
    name: str
    status: StepStatus
    detail: str | None = None


class DescribeSession(BaseModel):
    """A session as its owner sees it; ``url`` only for the owner."""

    id: str
    user: str
    anonymous: bool = False
    status: SessionStatus
    ready: bool = Field(description="The Jupyter server answers; open `url`.")
    reason: str | None = Field(default=None, description="Why it failed, stopped or waits.")
    resource_class: str
    cpu: str | None = None
    memory: str | None = None
    image: str | None = None
    directory: str | None = None
    repository: str | None = None
    commit: str | None = None
    environment: list[str] = Field(
        default_factory=list, description="Names of the variables the user set (not values)."
    )
    connections: list[str] = Field(
        default_factory=list, description="Connections granted to the session at its start."
    )
    launcher: str
    url: str | None = Field(
        default=None,
        description="Where its owner opens it: {NBPLANE_PUBLIC_URL}/sessions/{id}/ (JupyterLab "
        "and the Jupyter server's API, with the nbplane sign-in or bearer token).",
    )
    steps: list[DescribeSessionStep] = Field(default_factory=list)
    created_at: UtcDatetime
    started_at: UtcDatetime = Field(description="Its last create or resume.")
    ready_at: UtcDatetime | None = None
    last_activity_at: UtcDatetime | None = Field(
        default=None, description="The Jupyter server's own last activity, as last seen."
    )
    hibernated_at: UtcDatetime | None = None
    hibernate_at: UtcDatetime | None = Field(
        default=None, description="When it will be hibernated if it stays idle."
    )
    delete_at: UtcDatetime | None = Field(
        default=None, description="When it will be deleted (hibernated too long, or anonymous)."
    )


class DescribeResourceClass(BaseModel):
    """A choice of resources for a session; ``teams`` empty: everyone may choose it."""

    name: str
    description: str = ""
    cpu: str | None = None
    memory: str | None = None
    default: bool = False
    teams: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}$", value):
            raise ValueError(f"resource class name {value!r} must be 1-63 of a-z, 0-9, '_.-'")
        return value


class ConnectionKind(StrEnum):
    DATABASE = "database"
    """``url``: a SQLAlchemy URL; sessions get it as NBPLANE_DB_URL too (the default one)."""
    S3 = "s3"
    """``bucket`` (required), ``access_key_id``, ``secret_access_key``, ``endpoint_url``,
    ``region``."""
    GENERIC = "generic"
    """Any keys."""


REQUIRED_KEYS = {ConnectionKind.DATABASE: ("url",), ConnectionKind.S3: ("bucket",)}
ALLOWED_KEYS = {
    ConnectionKind.DATABASE: ("url",),
    ConnectionKind.S3: ("bucket", "access_key_id", "secret_access_key", "endpoint_url", "region"),
}


class CreateConnection(BaseModel):
    """Body of ``POST /api/v1/connections`` (admins)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Lowercase letters, digits, '_'; unique.")
    kind: ConnectionKind
    description: str | None = None
    default: bool = Field(
        default=False,
        description="database: the one a session's NBPLANE_DB_URL points to when several are "
        "granted (else the first by name).",
    )
    values: dict[str, str] = Field(description="The credentials; encrypted at rest, never shown.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CONNECTION_NAME.match(value):
            raise ValueError(
                f"connection name {value!r} must be 1-63 of lowercase letters, digits and '_', "
                "starting with a letter"
            )
        return value

    @model_validator(mode="after")
    def _keys(self) -> CreateConnection:
        seen: set[str] = set()
        for key in self.values:
            if not CONNECTION_KEY.match(key):
                raise ValueError(
                    f"key {key!r} must be letters, digits and '_', starting with a letter"
                )
            if key.upper() in seen:
                raise ValueError(f"key {key!r} differs from another only in case")
            seen.add(key.upper())
        allowed = ALLOWED_KEYS.get(self.kind)
        if allowed is not None and (unknown := sorted(set(self.values) - set(allowed))):
            raise ValueError(
                f"a {self.kind} connection has no key {unknown[0]!r}; its keys: "
                f"{', '.join(allowed)}"
            )
        missing = [key for key in REQUIRED_KEYS.get(self.kind, ()) if not self.values.get(key)]
        if missing:
            raise ValueError(f"a {self.kind} connection needs {', '.join(missing)}")
        return self


class GranteeKind(StrEnum):
    USER = "user"
    TEAM = "team"


class GrantConnection(BaseModel):
    """Body of ``POST`` and ``DELETE /api/v1/connections/{name}/grants``: exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, max_length=255)
    team: str | None = Field(default=None, max_length=63)

    @model_validator(mode="after")
    def _one(self) -> GrantConnection:
        if (self.user is None) == (self.team is None):
            raise ValueError("name exactly one of user or team")
        return self

    @property
    def grantee(self) -> tuple[GranteeKind, str]:
        if self.user is not None:
            return GranteeKind.USER, self.user
        assert self.team is not None
        return GranteeKind.TEAM, self.team


class DescribeGrant(BaseModel):
    kind: GranteeKind
    name: str


class DescribeConnection(BaseModel):
    """A connection without its values: only their key names."""

    name: str
    kind: ConnectionKind
    description: str | None = None
    default: bool = False
    keys: list[str]
    grants: list[DescribeGrant] = Field(default_factory=list)
    created_at: UtcDatetime
    created_by: str | None = None


class SessionRecord(BaseModel):
    """A session's whole row, as the store hands it to the service (never sent out)."""

    id: str
    owner: str
    anonymous: bool
    resource_class: str
    image: str | None
    directory: str | None
    repository: str | None
    commit: str | None
    secrets: bytes
    token_name: str | None
    connections: list[str]
    status: SessionStatus
    action: str | None
    reason: str | None
    launcher: str
    launcher_state: dict[str, Any] | None
    steps: list[dict[str, Any]]
    url: str | None
    ready: bool
    created_at: UtcDatetime
    started_at: UtcDatetime
    ready_at: UtcDatetime | None
    last_activity_at: UtcDatetime | None
    hibernated_at: UtcDatetime | None
    expires_at: UtcDatetime | None
    updated_at: UtcDatetime


@dataclass(frozen=True)
class NewSession:
    """What a session's row starts with; the lifecycle gives its first status, the store the
    rest (no launcher state, steps or connections yet; created, started and updated now)."""

    id: str
    owner: str
    anonymous: bool
    resource_class: str
    image: str | None
    directory: str | None
    repository: str | None
    commit: str | None
    secrets: bytes
    """Sealed: the server's token, the session's nbplane token and the user's environment."""
    token_name: str | None
    launcher: str
    expires_at: datetime | None


@dataclass(frozen=True)
class NewConnection:
    """A connection's row as an admin defines it; ``secret`` holds its values, sealed."""

    name: str
    kind: ConnectionKind
    description: str | None
    is_default: bool
    keys: list[str]
    secret: bytes
    created_by: str | None


class ConnectionRecord(BaseModel):
    """A connection's whole row with its grants, as the store hands it to the service (never
    sent out: ``secret`` holds its values, sealed)."""

    id: int
    name: str
    kind: ConnectionKind
    description: str | None
    is_default: bool
    keys: list[str]
    secret: bytes
    created_at: UtcDatetime
    created_by: str | None
    grants: list[DescribeGrant]
