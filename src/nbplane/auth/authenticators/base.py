"""What every authenticator is: a way to learn who a person is from the organisation's own
identity source, ending in an nbplane user (made on first login, teams from groups) and, for a
login, a token of nbplane's own, so every other request keeps using nbplane's revocable tokens.

Two ways in, and an authenticator may offer either or both:

- ``identify``: the request itself says who is calling, by means this authenticator trusts (a
  gateway's header, another application's session cookie): a CLI login through it or a browser
  on its first page gets a token, and the request is let through as that user;
- ``start_login`` and ``finish_login``: a browser goes to a provider and comes back (OpenID
  Connect), the server trades what it brings for an identity.

``token`` (nbplane's own tokens) works whichever authenticator is configured: the CLI and
automation always may use a token from ``nbplane token create``."""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from nbplane.errors import NotFound

if TYPE_CHECKING:
    from nbplane.sessions.models import CreateConnection
    from nbplane.settings import Settings


@dataclass(frozen=True)
class Presented:
    """What a request shows an authenticator: its headers and cookies (names in lower case
    for headers), and the address it came from (None when unknown)."""

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    client: str | None


@dataclass(frozen=True)
class Identity:
    """Whom an identity source vouches for: the nbplane user's name, their groups (None: the
    source says nothing of them, their memberships are kept) and, from an application, the
    connections they may use for this login."""

    user: str
    groups: tuple[str, ...] | None = None
    connections: tuple[CreateConnection, ...] | None = None
    """From an application: the connections the user may use now (None: the source says
    nothing of connections, those stored are kept)."""
    refresh: str | None = None
    """A secret that renews the login with its source (OpenID Connect's refresh token)."""
    expires_at: datetime | None = None
    """When the source's word ends: the login's nbplane token ends then unless renewed."""


@dataclass(frozen=True)
class BrowserLogin:
    """A login sent to a provider: where the browser goes, and what only the callback may read
    back (kept in a short-lived cookie) to finish it."""

    url: str
    secret: str


@dataclass
class Authenticator(ABC):
    """A way to learn who a person is; built from the settings like launchers and executors."""

    settings: Settings
    name: ClassVar[str] = ""
    identifies_requests: ClassVar[bool] = False
    """Whether ``identify`` may find someone in a request (header, app)."""
    browser_login: ClassVar[bool] = False
    """Whether ``start_login`` sends a browser somewhere (oidc)."""
    renews_logins: ClassVar[bool] = False
    """Whether a login's ``Identity.refresh`` is renewed with ``renew`` (oidc)."""

    @property
    def provider(self) -> str:
        """What a sign-in button calls the identity source."""
        return self.name

    def screen(self, presented: Presented) -> None:
        """Refuse a request carrying what this authenticator reads from where it may not come
        from (a gateway's header from another address); called on every request."""
        return

    def identify(self, presented: Presented) -> Identity | None:
        """Who the request itself says is calling, or None when it carries nothing of ours."""
        return None

    def start_login(self, redirect_uri: str) -> BrowserLogin:
        """Where to send a browser to log in, coming back to ``redirect_uri``."""
        raise NotFound(self._no_browser_login(), field="authenticator")

    def finish_login(self, redirect_uri: str, secret: str, answer: Mapping[str, str]) -> Identity:
        """The identity the browser's return to ``redirect_uri`` (its query, ``answer``)
        proves, given the ``secret`` of ``start_login``."""
        raise NotFound(self._no_browser_login(), field="authenticator")

    def renew(self, refresh: str) -> str:
        """Renew a login with its source: the secret that renews it next time; Unauthorized
        when the source refuses."""
        raise NotFound(f"the {self.name} authenticator renews no login", field="authenticator")

    def logout_url(self, post_logout_uri: str) -> str | None:
        """Where a browser signing out also ends its login at the source, if anywhere."""
        return None

    def _no_browser_login(self) -> str:
        return (
            f"this server's authenticator ({self.name}) has no browser login (an OpenID "
            "provider's needs NBPLANE_AUTHENTICATOR=oidc and NBPLANE_OIDC_ISSUER, or earlier "
            "versions' NBPLANE_OAUTH_AUTHORIZE_URL and its siblings); sign in with a token from "
            "`nbplane token create`"
        )
