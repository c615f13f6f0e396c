"""Users, their teams and their API tokens. Only a token's SHA-256 is stored, so a leaked
database leaks no token."""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbplane.auth.models import (
    ADMIN,
    DescribeCaller,
    DescribeTeam,
    DescribeToken,
    DescribeUser,
    UpdateUser,
)
from nbplane.errors import Conflict, NotFound
from nbplane.store.tables import api_tokens, jobs, login_renewals, team_members, users

TOKEN_PREFIX = "nbp_"
TOKEN_COLUMNS = [
    *(column for column in api_tokens.c if column.name in DescribeToken.model_fields),
    users.c.name.label("user"),
]
BOOTSTRAP_ATTEMPTS = 5
"""Replicas starting at once may collide on the unique user or token name: the loser retries."""


def token_hash(token: str) -> str:
    """What is kept in place of a secret: of API tokens here, of job executions' credentials in
    the deployments store."""
    return hashlib.sha256(token.encode()).hexdigest()


class AuthStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # users and teams
    def create_user(
        self, name: str, admin: bool = False, max_sessions: int | None = None
    ) -> DescribeUser:
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(users).values(
                        name=name,
                        admin=admin,
                        created_at=datetime.now(UTC),
                        max_sessions=max_sessions,
                    )
                )
        except IntegrityError:
            raise Conflict(f"a user named {name!r} exists already", field="name") from None
        return self.user(name)

    def user(self, name: str) -> DescribeUser:
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.name == name)).mappings().first()
            if row is None:
                raise NotFound(f"no user named {name!r}", field="user")
            return _describe_user(row, self._teams(connection, row["id"]))

    def list_users(self) -> list[DescribeUser]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(users).order_by(users.c.name)).mappings().all()
            members = connection.execute(
                select(team_members.c.user_id, team_members.c.team).order_by(team_members.c.team)
            ).all()
        teams: dict[int, list[str]] = defaultdict(list)
        for user_id, team in members:
            teams[user_id].append(team)
        return [_describe_user(row, teams[row["id"]]) for row in rows]

    def set_max_sessions(self, name: str, max_sessions: int | None) -> DescribeUser:
        """The user's own limit of running sessions (None: the server's default)."""
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(users).where(users.c.name == name).values(max_sessions=max_sessions)
            ).rowcount
        if not updated:
            raise NotFound(f"no user named {name!r}", field="user")
        return self.user(name)

    def update_user(self, name: str, changes: UpdateUser) -> DescribeUser:
        """Change the fields given in ``changes`` (``max_sessions`` None: the default)."""
        values = changes.model_dump(include=changes.model_fields_set)
        if values.get("admin") is None:
            values.pop("admin", None)
        if values:
            with self.engine.begin() as connection:
                updated = connection.execute(
                    update(users).where(users.c.name == name).values(**values)
                ).rowcount
            if not updated:
                raise NotFound(f"no user named {name!r}", field="user")
        return self.user(name)

    def delete_user(self, name: str) -> None:
        """The user, their tokens and memberships go; what they made (jobs, sessions) stays."""
        user_id = self._user_id(name)
        with self.engine.begin() as connection:
            connection.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            connection.execute(delete(team_members).where(team_members.c.user_id == user_id))
            connection.execute(delete(users).where(users.c.id == user_id))

    def list_teams(self) -> list[DescribeTeam]:
        """Every team with its members: those with a member and those with only jobs."""
        with self.engine.connect() as connection:
            members = connection.execute(
                select(team_members.c.team, users.c.name)
                .join(users, users.c.id == team_members.c.user_id)
                .order_by(team_members.c.team, users.c.name)
            ).all()
            with_jobs = connection.execute(select(jobs.c.team).distinct()).scalars().all()
        teams: dict[str, list[str]] = {team: [] for team in with_jobs}
        for team, user in members:
            teams.setdefault(team, []).append(user)
        return [DescribeTeam(name=name, members=teams[name]) for name in sorted(teams)]

    def add_member(self, user: str, team: str) -> None:
        user_id = self._user_id(user)
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(team_members).values(user_id=user_id, team=team))
        except IntegrityError:
            pass  # already a member

    def remove_member(self, user: str, team: str) -> bool:
        """False when the user was not in the team."""
        user_id = self._user_id(user)
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(team_members).where(
                    team_members.c.user_id == user_id, team_members.c.team == team
                )
            ).rowcount
        return bool(removed)

    def _user_id(self, name: str, create_admin: bool = False) -> int:
        """The user's id; the built-in ``admin`` user is made on first use."""
        with self.engine.connect() as connection:
            found = connection.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if found is not None:
            return int(found)
        if create_admin and name == ADMIN:
            self.create_user(ADMIN, admin=True)
            return self._user_id(name)
        raise NotFound(
            f"no user named {name!r}; create it with `nbplane user create`", field="user"
        )

    @staticmethod
    def _teams(connection: Connection, user_id: int) -> list[str]:
        return list(
            connection.execute(
                select(team_members.c.team)
                .where(team_members.c.user_id == user_id)
                .order_by(team_members.c.team)
            ).scalars()
        )

    # tokens
    def create_token(
        self, name: str, user: str = ADMIN, expires_at: datetime | None = None
    ) -> tuple[DescribeToken, str]:
        """A new token of ``user``, working until ``expires_at`` (None: until revoked); the
        secret is returned once and never stored."""
        user_id = self._user_id(user, create_admin=True)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        values = {
            "name": name,
            "prefix": token[:10],
            "created_at": datetime.now(UTC),
            "expires_at": expires_at,
        }
        try:
            with self.engine.begin() as connection:
                key = connection.execute(
                    insert(api_tokens).values(
                        user_id=user_id, token_hash=token_hash(token), **values
                    )
                ).inserted_primary_key
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists already", field="name") from None
        assert key is not None
        return DescribeToken.model_validate({"id": key[0], "user": user, **values}), token

    def list_tokens(self, user: str | None = None) -> list[DescribeToken]:
        """Every token, or ``user``'s only; a token without a user is the admin's."""
        query = select(*TOKEN_COLUMNS).outerjoin(users, users.c.id == api_tokens.c.user_id)
        if user is not None:
            query = query.where(api_tokens.c.user_id == self._user_id(user))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(api_tokens.c.id)).mappings()
            return [
                DescribeToken.model_validate({**row, "user": row["user"] or ADMIN}) for row in rows
            ]

    def revoke_token(self, name: str, user: str | None = None) -> bool:
        """Revoke the live token of this name (of ``user`` only, when given); False when there
        is none."""
        condition = [api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)]
        if user is not None:
            owner = select(users.c.id).where(users.c.name == user).scalar_subquery()
            condition.append(api_tokens.c.user_id == owner)
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(api_tokens).where(*condition).values(revoked_at=datetime.now(UTC))
            ).rowcount
        return bool(updated)

    def set_renewal(self, name: str, secret: bytes, renew_at: datetime) -> None:
        """How the login that made the token ``name`` is renewed (``secret``, sealed), and
        when next."""
        with self.engine.begin() as connection:
            token_id = connection.execute(
                select(api_tokens.c.id).where(api_tokens.c.name == name)
            ).scalar()
            if token_id is None:
                raise NotFound(f"no token named {name!r}", field="token")
            connection.execute(delete(login_renewals).where(login_renewals.c.token_id == token_id))
            connection.execute(
                insert(login_renewals).values(token_id=token_id, secret=secret, renew_at=renew_at)
            )

    def renewal(self, name: str) -> tuple[bytes, datetime] | None:
        """The live token ``name``'s renewal secret (sealed) and when it is due, if its login
        has one."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(login_renewals.c.secret, login_renewals.c.renew_at)
                .join(api_tokens, api_tokens.c.id == login_renewals.c.token_id)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            ).first()
        if found is None:
            return None
        renew_at = found.renew_at
        if renew_at.tzinfo is None:  # SQLite keeps no zone: the column holds UTC
            renew_at = renew_at.replace(tzinfo=UTC)
        return found.secret, renew_at

    def ensure_admin_token(self, user: str, token: str, name: str) -> str:
        """Make sure ``user`` exists, is an admin and holds ``token`` under ``name``: the
        bootstrap of the first admin, run by every replica at start. Returns what it did:
        'created', 'rotated' (another secret had the name), 'unchanged', or 'revoked' (this
        secret was revoked: it stays so, a new secret is needed). One transaction per attempt;
        a replica that loses a race on a unique name retries and then finds the winner's rows."""
        digest = token_hash(token)
        for attempt in range(BOOTSTRAP_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    return self._ensure_admin_token(connection, user, digest, token, name)
            except IntegrityError:
                if attempt == BOOTSTRAP_ATTEMPTS - 1:
                    raise Conflict(
                        f"cannot give user {user!r} the token {name!r}: another token has the "
                        "same secret",
                        field="admin_token",
                    ) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _ensure_admin_token(
        connection: Connection, user: str, digest: str, token: str, name: str
    ) -> str:
        user_id = connection.execute(select(users.c.id).where(users.c.name == user)).scalar()
        if user_id is None:
            user_id = connection.execute(
                insert(users).values(name=user, admin=True, created_at=datetime.now(UTC))
            ).inserted_primary_key[0]  # type: ignore[index]
        else:
            connection.execute(update(users).where(users.c.id == user_id).values(admin=True))
        found = connection.execute(
            select(api_tokens.c.token_hash, api_tokens.c.user_id, api_tokens.c.revoked_at).where(
                api_tokens.c.name == name
            )
        ).first()
        if found is not None and found.token_hash == digest:
            if found.revoked_at is not None:
                return "revoked"
            if found.user_id == user_id:
                return "unchanged"
        values = {
            "user_id": user_id,
            "token_hash": digest,
            "prefix": token[:4],
            "created_at": datetime.now(UTC),
            "last_used_at": None,
            "revoked_at": None,
            "expires_at": None,
        }
        if found is None:
            connection.execute(insert(api_tokens).values(name=name, **values))
            return "created"
        connection.execute(update(api_tokens).where(api_tokens.c.name == name).values(**values))
        return "rotated"

    def authenticate(self, token: str) -> DescribeCaller | None:
        """Who the unrevoked token with this secret speaks for, or None; its expiry is on the
        caller (``token_expires_at``) for the server to refuse an expired one in words. A token
        without a user (made before users existed) is the admin's."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(
                    api_tokens.c.name,
                    api_tokens.c.expires_at,
                    api_tokens.c.user_id,
                    users.c.name.label("user"),
                    users.c.admin,
                )
                .outerjoin(users, users.c.id == api_tokens.c.user_id)
                .where(
                    api_tokens.c.token_hash == token_hash(token),
                    api_tokens.c.revoked_at.is_(None),
                )
            ).first()
            if found is None:
                return None
            if found.user_id is None:
                user, admin, teams = ADMIN, True, []
            else:
                user, admin = found.user, found.admin
                teams = self._teams(connection, found.user_id)
        return DescribeCaller(
            user=user, admin=admin, teams=teams, token=found.name, token_expires_at=found.expires_at
        )


def _describe_user(row: RowMapping, teams: list[str]) -> DescribeUser:
    return DescribeUser.model_validate({**row, "teams": teams})
