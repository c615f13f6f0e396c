"""Session records, connections and their grants, handed out as models (``SessionRecord``,
``ConnectionRecord``). Every status change is a conditional UPDATE (``transition``): of several
replicas acting on one session, exactly one wins; :mod:`nbplane.sessions.lifecycle` is its only
caller."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nbplane._time import now
from nbplane.errors import Conflict, NotFound
from nbplane.sessions.models import (
    ConnectionRecord,
    DescribeGrant,
    GranteeKind,
    NewConnection,
    NewSession,
    SessionRecord,
    SessionStatus,
)
from nbplane.store.tables import connection_grants, connections, sessions


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # sessions
    def create(self, new: NewSession, status: SessionStatus) -> SessionRecord:
        moment = now()
        with self.engine.begin() as connection:
            connection.execute(
                insert(sessions).values(
                    **asdict(new),
                    status=str(status),
                    connections=[],
                    steps=[],
                    ready=False,
                    created_at=moment,
                    started_at=moment,
                    updated_at=moment,
                )
            )
        return self.get(new.id)

    def find(self, session_id: str) -> SessionRecord | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(sessions).where(sessions.c.id == session_id))
                .mappings()
                .first()
            )
        return SessionRecord.model_validate(dict(row)) if row else None

    def get(self, session_id: str) -> SessionRecord:
        found = self.find(session_id)
        if found is None:
            raise NotFound(f"no session {session_id!r}", field="session_id")
        return found

    def list_sessions(
        self,
        owner: str | None = None,
        statuses: Iterable[SessionStatus] | None = None,
        anonymous: bool | None = None,
    ) -> list[SessionRecord]:
        where: list[Any] = []
        if owner is not None:
            where.append(sessions.c.owner == owner)
        if statuses is not None:
            where.append(sessions.c.status.in_([str(status) for status in statuses]))
        if anonymous is not None:
            where.append(sessions.c.anonymous.is_(anonymous))
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(sessions).where(*where).order_by(sessions.c.created_at, sessions.c.id)
            ).mappings()
            return [SessionRecord.model_validate(dict(row)) for row in rows]

    def count(self, anonymous: bool) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(sessions)
                    .where(sessions.c.anonymous.is_(anonymous))
                ).scalar_one()
            )

    def count_by_status(self) -> dict[str, int]:
        """Every status with its number of sessions (zero too), for the metrics."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(sessions.c.status, func.count()).group_by(sessions.c.status)
            ).all()
        found = {str(status): int(count) for status, count in rows}
        return {str(status): found.get(status, 0) for status in SessionStatus}

    def transition(
        self,
        session_id: str,
        expected: Iterable[SessionStatus],
        *,
        updated_at: datetime | None = None,
        **values: Any,
    ) -> bool:
        """Change the session if its status is still one of ``expected`` (and, with
        ``updated_at``, nobody changed it since): True for the one caller that did."""
        where = [
            sessions.c.id == session_id,
            sessions.c.status.in_([str(status) for status in expected]),
        ]
        if updated_at is not None:
            where.append(sessions.c.updated_at == updated_at)
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(sessions).where(*where).values(updated_at=now(), **values)
                ).rowcount
            )

    def delete(self, session_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(sessions).where(sessions.c.id == session_id))

    # connections
    def create_connection(self, new: NewConnection) -> None:
        values = {**asdict(new), "kind": str(new.kind)}
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(connections).values(created_at=now(), **values))
        except IntegrityError:
            raise Conflict(
                f"a connection named {new.name!r} exists already", field="name"
            ) from None

    def connections(self, names: Iterable[str] | None = None) -> list[ConnectionRecord]:
        """Connections (sealed values included) with their grants, by name."""
        where = [] if names is None else [connections.c.name.in_(list(names))]
        with self.engine.connect() as connection:
            rows = (
                connection.execute(select(connections).where(*where).order_by(connections.c.name))
                .mappings()
                .all()
            )
            grants = connection.execute(
                select(connection_grants).order_by(
                    connection_grants.c.grantee_kind, connection_grants.c.grantee
                )
            ).all()
        return [
            ConnectionRecord.model_validate(
                {
                    **row,
                    "grants": [
                        DescribeGrant(kind=GranteeKind(grant.grantee_kind), name=grant.grantee)
                        for grant in grants
                        if grant.connection_id == row["id"]
                    ],
                }
            )
            for row in rows
        ]

    def connection(self, name: str) -> ConnectionRecord:
        found = self.connections([name])
        if not found:
            raise NotFound(f"no connection named {name!r}", field="name")
        return found[0]

    def delete_connection(self, name: str) -> None:
        with self.engine.begin() as connection:
            deleted = connection.execute(
                delete(connections).where(connections.c.name == name)
            ).rowcount
        if not deleted:
            raise NotFound(f"no connection named {name!r}", field="name")

    def grant(self, name: str, kind: GranteeKind, grantee: str) -> None:
        connection_id = self.connection(name).id
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(connection_grants).values(
                        connection_id=connection_id, grantee_kind=str(kind), grantee=grantee
                    )
                )
        except IntegrityError:
            pass  # granted already

    def revoke(self, name: str, kind: GranteeKind, grantee: str) -> bool:
        connection_id = self.connection(name).id
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    delete(connection_grants).where(
                        connection_grants.c.connection_id == connection_id,
                        connection_grants.c.grantee_kind == str(kind),
                        connection_grants.c.grantee == grantee,
                    )
                ).rowcount
            )

    def granted(self, user: str, teams: Iterable[str]) -> list[ConnectionRecord]:
        """The connections granted to this user or one of their teams, by name."""
        who = or_(
            and_(
                connection_grants.c.grantee_kind == str(GranteeKind.USER),
                connection_grants.c.grantee == user,
            ),
            and_(
                connection_grants.c.grantee_kind == str(GranteeKind.TEAM),
                connection_grants.c.grantee.in_(list(teams)),
            ),
        )
        with self.engine.connect() as connection:
            names = connection.execute(
                select(connections.c.name)
                .join(connection_grants, connection_grants.c.connection_id == connections.c.id)
                .where(who)
                .distinct()
            ).scalars()
            wanted = sorted(names)
        return self.connections(wanted) if wanted else []
