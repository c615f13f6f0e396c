"""``oidc``: OpenID Connect. The provider's endpoints come from its discovery document
(``{NBPLANE_OIDC_ISSUER}/.well-known/openid-configuration``); a login's ID token is checked
against the provider's published keys (JWKS: signature, issuer, audience, expiry, nonce), its
groups claim sets the user's teams, and its refresh token renews the login every
NBPLANE_OIDC_REFRESH_SECONDS: the nbplane token ends when the provider refuses. Signing out of a
browser also ends the session at the provider when it offers an ``end_session_endpoint``
(RP-initiated logout).

The CLI (a public client: PKCE, no secret) and the Jupyter extension run the login themselves
and hand the provider's tokens to ``POST /api/v1/auth/oauth/token``; a browser signs in at the
server (``/nbplane/login``), which runs it as a confidential client when given a secret.

Earlier versions' NBPLANE_OAUTH_* endpoints still work without an issuer: no discovery and no
ID token, the user comes from the userinfo endpoint."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from nbplane.auth.authenticators.base import Authenticator, BrowserLogin, Identity
from nbplane.auth.logins import teams_of
from nbplane.auth.models import DescribeOAuth, ExchangeOAuthToken
from nbplane.auth.pkce import PkceLogin, check_transport, token_request
from nbplane.errors import ConfigError, Unauthorized, Unreachable

FETCH_TIMEOUT = httpx.Timeout(15.0, connect=10.0)
FALLBACK_USERNAME_CLAIM = "sub"
LEEWAY_SECONDS = 60
"""Clock skew allowed between the provider and nbplane when checking an ID token's times."""
LEGACY_SETTINGS = ("oauth_authorize_url", "oauth_token_url", "oauth_userinfo_url")


@dataclass(frozen=True)
class Endpoints:
    """Where the provider does what: from its discovery document, or the NBPLANE_OAUTH_*
    settings (then without an issuer, keys or logout)."""

    authorization: str
    token: str
    userinfo: str | None = None
    issuer: str | None = None
    jwks: str | None = None
    end_session: str | None = None


@dataclass
class OidcAuthenticator(Authenticator):
    name: ClassVar[str] = "oidc"
    browser_login: ClassVar[bool] = True
    renews_logins: ClassVar[bool] = True
    client_id: str = field(init=False)
    _endpoints: Endpoints | None = field(default=None, init=False)
    _keys: KeySet | None = field(default=None, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        client_id = settings.oidc_client_id or settings.oauth_client_id
        legacy = all(getattr(settings, name) for name in LEGACY_SETTINGS)
        if not client_id or not (settings.oidc_issuer or legacy):
            raise ConfigError(
                "the oidc authenticator needs NBPLANE_OIDC_ISSUER and NBPLANE_OIDC_CLIENT_ID (or "
                "earlier versions' NBPLANE_OAUTH_AUTHORIZE_URL, NBPLANE_OAUTH_TOKEN_URL, "
                "NBPLANE_OAUTH_USERINFO_URL and NBPLANE_OAUTH_CLIENT_ID)",
                field="oidc_issuer",
            )
        self.client_id = client_id

    @property
    def provider(self) -> str:
        issuer = self.settings.oidc_issuer or self.settings.oauth_authorize_url or ""
        return httpx.URL(issuer).netloc.decode() or "the identity provider"

    @property
    def endpoints(self) -> Endpoints:
        """The provider's endpoints, discovered on first use (a provider down when nbplane
        starts does not stop it)."""
        with self._lock:
            if self._endpoints is None:
                self._endpoints = self._discover()
            return self._endpoints

    def describe(self) -> DescribeOAuth:
        """What a client running the login itself (the CLI, the Jupyter extension) needs."""
        scopes = self.settings.oauth_scopes
        if self.settings.oidc_issuer and "openid" not in scopes.split():
            scopes = f"openid {scopes}"
        return DescribeOAuth(
            authorize_url=self.endpoints.authorization,
            token_url=self.endpoints.token,
            client_id=self.client_id,
            scopes=scopes,
        )

    def start_login(self, redirect_uri: str) -> BrowserLogin:
        login = PkceLogin(self.describe(), redirect_uri, client_secret=self._client_secret)
        return BrowserLogin(login.authorize_url, login.secret)

    def finish_login(self, redirect_uri: str, secret: str, answer: Mapping[str, str]) -> Identity:
        login = PkceLogin.resume(self.describe(), redirect_uri, secret, self._client_secret)
        return self.identity_of(login.finish(dict(answer)))

    def identity_of(self, tokens: ExchangeOAuthToken) -> Identity:
        """The provider's user that these tokens of a login prove."""
        endpoints = self.endpoints
        if tokens.id_token is not None and endpoints.jwks is not None:
            claims = self._id_token_claims(tokens)
            if endpoints.userinfo:  # more claims (groups) may be there only
                more = userinfo(endpoints.userinfo, tokens.access_token)
                if more.get("sub") == claims.get("sub"):
                    claims = {**more, **claims}
        elif endpoints.issuer is not None:
            raise Unauthorized(
                "the login brought no ID token: the provider must be asked for the 'openid' "
                "scope (NBPLANE_OAUTH_SCOPES)",
                field="id_token",
            )
        else:
            assert endpoints.userinfo is not None
            claims = userinfo(endpoints.userinfo, tokens.access_token)
        settings = self.settings
        groups = claims.get(settings.oauth_groups_claim)
        return Identity(
            user=claims.get(settings.oauth_username_claim)
            or claims.get(FALLBACK_USERNAME_CLAIM)
            or "",
            groups=None if groups is None else tuple(sorted(teams_of(groups))),
            refresh=tokens.refresh_token,
        )

    def renew(self, refresh: str) -> str:
        answer = token_request(
            self.describe(),
            {"grant_type": "refresh_token", "refresh_token": refresh},
            self._client_secret,
        )
        renewed = answer.get("refresh_token")
        return renewed if isinstance(renewed, str) and renewed else refresh  # rotated or not

    def logout_url(self, post_logout_uri: str) -> str | None:
        end_session = self.endpoints.end_session
        if end_session is None:
            return None
        params = {"client_id": self.client_id}
        if post_logout_uri:
            params["post_logout_redirect_uri"] = post_logout_uri
        return str(httpx.URL(end_session).copy_merge_params(params))

    @property
    def _client_secret(self) -> str | None:
        secret = self.settings.oidc_client_secret
        return secret.get_secret_value() if secret is not None else None

    def _discover(self) -> Endpoints:
        settings = self.settings
        issuer = settings.oidc_issuer
        if issuer is None:
            assert settings.oauth_authorize_url and settings.oauth_token_url
            return Endpoints(
                authorization=settings.oauth_authorize_url,
                token=settings.oauth_token_url,
                userinfo=settings.oauth_userinfo_url,
            )
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = fetch_json(url, "discovery document")
        if document.get("issuer") != issuer:
            raise Unreachable(
                f"the discovery document {url} names the issuer {document.get('issuer')!r}, "
                f"not NBPLANE_OIDC_ISSUER {issuer!r}",
                field="oidc_issuer",
            )
        try:
            found = Endpoints(
                authorization=document["authorization_endpoint"],
                token=document["token_endpoint"],
                userinfo=document.get("userinfo_endpoint"),
                issuer=issuer,
                jwks=document["jwks_uri"],
                end_session=document.get("end_session_endpoint"),
            )
        except KeyError as missing:
            raise Unreachable(
                f"the discovery document {url} has no {missing.args[0]}", field="oidc_issuer"
            ) from None
        for endpoint in (found.authorization, found.token, found.jwks):
            assert endpoint is not None
            check_transport(endpoint)
        return found

    def _id_token_claims(self, tokens: ExchangeOAuthToken) -> dict[str, Any]:
        """The ID token's claims, once its signature (the provider's keys), issuer, audience,
        times and nonce hold."""
        assert tokens.id_token is not None
        if tokens.nonce is None:
            raise Unauthorized("the login's nonce is missing: log in again", field="nonce")
        endpoints = self.endpoints
        try:
            try:
                decoded = jwt.decode(tokens.id_token, self._signing_keys(refresh=False))
            except (JoseError, ValueError):  # maybe a key rotated in since: fetch them again
                decoded = jwt.decode(tokens.id_token, self._signing_keys(refresh=True))
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": endpoints.issuer or ""},
                    "aud": {"essential": True, "value": self.client_id},
                    "exp": {"essential": True},
                },
                params={"nonce": tokens.nonce, "client_id": self.client_id},
            )
            claims.validate(leeway=LEEWAY_SECONDS)  # type: ignore[no-untyped-call]  # authlib
        except (JoseError, ValueError) as exc:
            raise Unauthorized(
                f"the ID token is not valid: {getattr(exc, 'description', None) or exc}; log "
                "in again",
                field="id_token",
            ) from None
        return dict(claims)

    def _signing_keys(self, *, refresh: bool) -> KeySet:
        with self._lock:
            if self._keys is None or refresh:
                assert self.endpoints.jwks is not None
                self._keys = KeySet.import_key_set(
                    fetch_json(self.endpoints.jwks, "signing keys (JWKS)")  # type: ignore[arg-type]
                )
            return self._keys


def fetch_json(url: str, what: str) -> dict[str, Any]:
    """A JSON object the provider publishes; a provider that cannot be asked is a 502."""
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT).raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unreachable(
            f"cannot read the OpenID provider's {what} at {url}: {str(exc) or type(exc).__name__}",
            field="oidc_issuer",
        ) from None
    if not isinstance(document, dict):
        raise Unreachable(f"the OpenID provider's {what} at {url} is not a JSON object")
    return document


def userinfo(url: str, access_token: str) -> dict[str, Any]:
    """The provider's claims about the token's owner; a token it refuses is ours to refuse."""
    try:
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {access_token}"}, timeout=FETCH_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise Unreachable(
            f"cannot reach the OAuth provider's userinfo endpoint {url}: "
            f"{str(exc) or type(exc).__name__}",
            field="oauth_userinfo_url",
        ) from None
    if response.status_code in (401, 403):
        raise Unauthorized(
            f"the OAuth provider refused the access token ({response.status_code} from its "
            "userinfo endpoint); log in again",
            field="access_token",
        )
    try:
        claims = response.raise_for_status().json()
    except (httpx.HTTPStatusError, ValueError):
        claims = None
    if not isinstance(claims, dict):
        raise Unreachable(
            f"the OAuth provider's userinfo endpoint {url} answered {response.status_code} "
            "without a JSON object of claims",
            field="oauth_userinfo_url",
        )
    return claims
