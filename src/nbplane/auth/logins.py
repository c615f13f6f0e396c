"""From an identity source's word to an nbplane user: made on first login (not an admin), their
teams set from the source's groups at each login, the connections an application grants them
stored for them, and a token of nbplane's own for a login, revocable like any other."""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from contextlib import suppress
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nbplane._time import now
from nbplane.auth.authenticators.base import Authenticator, Identity
from nbplane.auth.models import ADMIN, DescribeCaller, DescribeLogin
from nbplane.auth.service import AuthService, team_name
from nbplane.errors import ConfigError, Conflict, NbplaneError, Unauthorized
from nbplane.platform.secrets import SecretBox

if TYPE_CHECKING:
    from nbplane.sessions.connections import ConnectionService
    from nbplane.sessions.models import CreateConnection

log = logging.getLogger("nbplane.auth")

CALLER_SECONDS = 5.0
"""A request-borne identity (a gateway's header) is made an nbplane caller at most this often:
its teams follow the source's groups within that time."""
LOGIN_TOKEN_PREFIX = "login-"
"""Names of the tokens logins make: ``login-<authenticator>-<user>-<random>``."""
BROWSER_TOKEN_PREFIX = "web-sign-in-"
"""Names of the tokens a browser's sign-in makes; signing out revokes them (a pasted token
stays)."""


class Logins:
    """The logins of one server through its configured authenticator."""

    def __init__(
        self,
        auth: AuthService,
        authenticator: Authenticator,
        connections: ConnectionService | None = None,
    ) -> None:
        self.auth = auth
        self.authenticator = authenticator
        self.connections = connections
        self._callers: dict[str, tuple[DescribeCaller, float]] = {}
        self._lock = threading.Lock()

    def caller(self, identity: Identity) -> DescribeCaller:
        """The caller a request-borne identity speaks for, without a token."""
        key = _cache_key(identity)
        with self._lock:
            cached = self._callers.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        user = self.establish(identity)
        found = DescribeCaller(user=user.user, admin=user.admin, teams=user.teams)
        with self._lock:
            if len(self._callers) > 1024:  # bounded: entries are only a shortcut
                self._callers.clear()
            self._callers[key] = (found, time.monotonic() + CALLER_SECONDS)
        return found

    def log_in(self, identity: Identity, name: str | None = None) -> DescribeLogin:
        """The identity's user, established, with a new token of theirs that ends when the
        source's word does (``identity.expires_at``)."""
        caller = self.establish(identity)
        name = name or token_name(self.authenticator.name, caller.user)
        _, token = self.auth.create_token(name, caller.user, identity.expires_at)
        if identity.refresh is not None and self.authenticator.renews_logins:
            self._keep_renewal(name, identity.refresh)
        return DescribeLogin(
            token=token,
            user=caller.user,
            admin=caller.admin,
            teams=caller.teams,
            authenticator=self.authenticator.name,
            expires_at=identity.expires_at,
        )

    def renew_if_due(self, caller: DescribeCaller) -> None:
        """Renew the login behind the caller's token with its identity source when due; a
        source that refuses ends the login (its token is revoked), one that cannot be reached
        is asked again at the next check."""
        name = caller.token
        if not self.authenticator.renews_logins or name is None or not self.is_login_token(name):
            return
        found = self.auth.store.renewal(name)
        if found is None or found[1] > now():
            return
        refresh = str(self.box.open(found[0])["refresh"])
        try:
            renewed = self.authenticator.renew(refresh)
        except Unauthorized as refused:
            self.auth.revoke_token(name)
            raise Unauthorized(
                f"the identity provider ended this login ({refused.message}); log in again",
                field="authorization",
            ) from None
        except NbplaneError as exc:
            log.warning("cannot renew the login of token %s now: %s", name, exc.message)
            return
        self._keep_renewal(name, renewed)

    def _keep_renewal(self, name: str, refresh: str) -> None:
        renew_at = now() + timedelta(seconds=self.authenticator.settings.oidc_refresh_seconds)
        self.auth.store.set_renewal(name, self.box.seal({"refresh": refresh}), renew_at)

    @functools.cached_property
    def box(self) -> SecretBox:
        """The key renewal secrets are sealed with (NBPLANE_SECRET_KEY), read on first use."""
        return SecretBox(self.authenticator.settings)

    @staticmethod
    def is_login_token(name: str) -> bool:
        """Whether a login made the token of this name (ending the login revokes it)."""
        return name.startswith((LOGIN_TOKEN_PREFIX, BROWSER_TOKEN_PREFIX))

    def establish(self, identity: Identity) -> DescribeCaller:
        """The identity's user as nbplane knows it now: made if new, teams from its groups,
        connections granted."""
        user = username(identity.user)
        with suppress(Conflict):  # logged in before, or made by `nbplane user create`
            self.auth.create_user(user)
        if identity.groups is not None:
            described = self.auth.set_teams(user, teams_of(list(identity.groups)))
        else:
            described = self.auth.user(user)
        if identity.connections is not None:
            self._grant(user, identity.connections)
        return DescribeCaller(user=user, admin=described.admin, teams=described.teams)

    def _grant(self, user: str, connections: tuple[CreateConnection, ...]) -> None:
        """Make the connections an application grants ``user`` for this login exactly those it
        gives them: each stored as an admin's are (values sealed) and granted to the user, one
        the application gave before replaced when its values changed (its other grants kept),
        and the user's grant of one it no longer gives revoked. An admin's connection of the
        same name is left alone."""
        service = self.connections
        if service is None:
            raise ConfigError("this server stores no connections", field="connections")
        from nbplane.sessions.models import GrantConnection

        acting = DescribeCaller(
            user=f"{self.authenticator.name}-authenticator", admin=True, teams=[]
        )
        stored = {found.name: found for found in service.list_connections(acting)}
        mine = GrantConnection(user=user)
        for body in connections:
            existing = stored.get(body.name)
            if existing is not None and existing.created_by != acting.user:
                log.warning(
                    "the %s authenticator's connection %r for %s is not stored: an admin's "
                    "connection has that name",
                    self.authenticator.name,
                    body.name,
                    user,
                )
                continue
            if existing is None or not self._same(body):
                if existing is not None:
                    service.delete(acting, body.name)
                service.create(acting, body)
                for grant in existing.grants if existing is not None else []:
                    kept = GrantConnection(**{str(grant.kind): grant.name})
                    service.grant(acting, body.name, kept)
            service.grant(acting, body.name, mine)
        given = {body.name for body in connections}
        for name, found in stored.items():
            granted = any(g.kind == "user" and g.name == user for g in found.grants)
            if found.created_by == acting.user and name not in given and granted:
                service.revoke(acting, name, mine)

    def _same(self, body: CreateConnection) -> bool:
        """Whether the stored connection ``body.name`` already is ``body``."""
        assert self.connections is not None
        record = self.connections.sessions.connection(body.name)
        values = self.connections.box.open(record.secret)
        return (record.kind, record.description, record.is_default, values) == (
            body.kind,
            body.description,
            body.default,
            body.values,
        )


def _cache_key(identity: Identity) -> str:
    """The identity as a key: all it says (connections are models, which do not hash)."""
    connections = (
        None
        if identity.connections is None
        else [body.model_dump(mode="json") for body in identity.connections]
    )
    return json.dumps([identity.user, identity.groups, connections], sort_keys=True)


def token_name(authenticator: str, user: str) -> str:
    return f"{LOGIN_TOKEN_PREFIX}{authenticator}-{user[:200]}-{secrets.token_hex(4)}"


def username(value: Any) -> str:
    """The source's user name, if nbplane can name a user so."""
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise Unauthorized(
            "the identity source gave no usable user name (1-255 characters)", field="user"
        )
    if value == ADMIN:
        raise Unauthorized(
            f"the user {ADMIN!r} cannot log in through an identity source: that is nbplane's "
            "built-in admin",
            field="user",
        )
    return value


def teams_of(groups: Any) -> set[str]:
    """The groups that are valid team names; a source's other groups are not teams."""
    names = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
    return {name for name in names if isinstance(name, str) and _is_team_name(name)}


def _is_team_name(name: str) -> bool:
    try:
        team_name(name)
    except ConfigError:
        return False
    return True
