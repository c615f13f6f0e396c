"""Named connections an admin defines and grants, and the variables a session gets from them.

A session of a user receives every connection granted to that user or to one of their teams:

- ``NBPLANE_CONNECTION_<NAME>_<KEY>`` for each key of each connection (name and key in upper
  case), e.g. ``NBPLANE_CONNECTION_WAREHOUSE_URL``, ``NBPLANE_CONNECTION_LAKE_BUCKET``;
- ``NBPLANE_DB_URL``: the ``url`` of a granted ``database`` connection (the one marked default,
  else the first by name), so ``job_input`` in the session queries that database;
- ``NBPLANE_CONNECTIONS``: the granted connections' names, comma-separated.

Values are sealed with the job secrets' Fernet key (NBPLANE_SECRET_KEY) before they are stored;
only key names ever leave the server in a response.
"""

from __future__ import annotations

import functools

from nbplane.auth.models import DescribeCaller
from nbplane.errors import NotFound
from nbplane.jobs.backend import default_database
from nbplane.jobs.models import DescribeGrantedConnection
from nbplane.platform.secrets import SecretBox
from nbplane.sessions.models import (
    ConnectionRecord,
    CreateConnection,
    DescribeConnection,
    GrantConnection,
    NewConnection,
)
from nbplane.settings import Settings
from nbplane.store import Store

PREFIX = "NBPLANE_CONNECTION_"


def _admin(caller: DescribeCaller) -> None:
    """Connections are an admin's business; anyone else is told there is nothing here."""
    if not caller.admin:
        raise NotFound("connections are managed by admins", field="connection")


def _describe(record: ConnectionRecord) -> DescribeConnection:
    return DescribeConnection(
        name=record.name,
        kind=record.kind,
        description=record.description,
        default=record.is_default,
        keys=record.keys,
        grants=record.grants,
        created_at=record.created_at,
        created_by=record.created_by,
    )


class ConnectionService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.sessions = store.sessions
        self.settings = settings

    @functools.cached_property
    def box(self) -> SecretBox:
        """The key, read when a value is sealed or opened (a job with no connection never)."""
        return SecretBox(self.settings)

    def create(self, caller: DescribeCaller, body: CreateConnection) -> DescribeConnection:
        _admin(caller)
        self.sessions.create_connection(
            NewConnection(
                name=body.name,
                kind=body.kind,
                description=body.description,
                is_default=body.default,
                keys=sorted(body.values),
                secret=self.box.seal(body.values),
                created_by=caller.user,
            )
        )
        return self.get(caller, body.name)

    def list_connections(self, caller: DescribeCaller) -> list[DescribeConnection]:
        _admin(caller)
        return [_describe(row) for row in self.sessions.connections()]

    def get(self, caller: DescribeCaller, name: str) -> DescribeConnection:
        _admin(caller)
        return _describe(self.sessions.connection(name))

    def delete(self, caller: DescribeCaller, name: str) -> None:
        _admin(caller)
        self.sessions.delete_connection(name)

    def grant(self, caller: DescribeCaller, name: str, body: GrantConnection) -> DescribeConnection:
        _admin(caller)
        kind, grantee = body.grantee
        self.sessions.grant(name, kind, grantee)
        return self.get(caller, name)

    def revoke(
        self, caller: DescribeCaller, name: str, body: GrantConnection
    ) -> DescribeConnection:
        _admin(caller)
        kind, grantee = body.grantee
        if not self.sessions.revoke(name, kind, grantee):
            raise NotFound(
                f"connection {name!r} is not granted to {kind} {grantee!r}", field=str(kind)
            )
        return self.get(caller, name)

    def granted(self, user: str, teams: list[str]) -> list[DescribeGrantedConnection]:
        """The connections granted to this user or their teams, with their values; the default
        ones first (a job's or a session's database is the first database among them)."""
        records = self.sessions.granted(user, teams)
        records.sort(key=lambda record: (not record.is_default, record.name))
        return [
            DescribeGrantedConnection(
                name=record.name,
                kind=str(record.kind),
                values={key: str(value) for key, value in self.box.open(record.secret).items()},
            )
            for record in records
        ]

    def environment(self, user: str, teams: list[str]) -> tuple[list[str], dict[str, str]]:
        """The names of the connections granted to this user and the variables they make."""
        granted = self.granted(user, teams)
        variables: dict[str, str] = {}
        for connection in granted:
            for key, value in connection.values.items():
                variables[f"{PREFIX}{connection.name.upper()}_{key.upper()}"] = value
        database = default_database(granted)
        if database is not None:
            variables["NBPLANE_DB_URL"] = database
        names = sorted(connection.name for connection in granted)
        if names:
            variables["NBPLANE_CONNECTIONS"] = ",".join(names)
        return names, variables
