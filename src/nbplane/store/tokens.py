"""API tokens: only their SHA-256 is stored, so a leaked database leaks no token."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbplane.apis.models import DescribeToken
from nbplane.deployments.models import DescribeCaller
from nbplane.errors import ConfigError
from nbplane.store.deployments import ADMIN, ControlStore
from nbplane.store.tables import api_tokens

TOKEN_PREFIX = "nbp_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, name: str, user: str = ADMIN, expires_at: datetime | None = None
    ) -> tuple[DescribeToken, str]:
        """A new token of ``user``, working until ``expires_at`` (None: until revoked); the
        secret is returned once and never stored."""
        user_id = ControlStore(self.engine).user_id(user, create_admin=True)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix, created_at = token[:10], datetime.now(UTC)
        values = {
            "user_id": user_id,
            "name": name,
            "token_hash": token_hash(token),
            "prefix": prefix,
            "created_at": created_at,
            "expires_at": expires_at,
        }
        try:
            with self.engine.begin() as connection:
                key = connection.execute(insert(api_tokens).values(**values)).inserted_primary_key
        except IntegrityError:
            raise ConfigError(f"a token named {name!r} exists already", field="name") from None
        assert key is not None
        described = DescribeToken(
            id=key[0], name=name, prefix=prefix, created_at=created_at, expires_at=expires_at
        )
        return described, token

    def all(self) -> list[DescribeToken]:
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(
                        api_tokens.c.id,
                        api_tokens.c.name,
                        api_tokens.c.prefix,
                        api_tokens.c.created_at,
                        api_tokens.c.last_used_at,
                        api_tokens.c.revoked_at,
                        api_tokens.c.expires_at,
                    ).order_by(api_tokens.c.id)
                )
                .mappings()
                .all()
            )
        return [DescribeToken.model_validate(row) for row in rows]

    def revoke(self, name: str) -> bool:
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        return bool(updated)

    def authenticate(self, token: str) -> DescribeCaller | None:
        """Who the unrevoked token with this secret speaks for, or None; its expiry is on the
        caller (``token_expires_at``) for the server to refuse an expired one in words."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(api_tokens.c.name, api_tokens.c.user_id, api_tokens.c.expires_at).where(
                    api_tokens.c.token_hash == token_hash(token),
                    api_tokens.c.revoked_at.is_(None),
                )
            ).first()
        if row is None:
            return None
        found = ControlStore(self.engine).caller(row.user_id, row.name)
        return DescribeCaller.model_validate(
            {**found.model_dump(), "token_expires_at": row.expires_at}
        )
