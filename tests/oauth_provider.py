"""A real OpenID Connect provider on loopback for the login tests, built from authlib's server
components: the authorization code grant with PKCE required of its one public client, ID tokens
signed with a key it publishes (JWKS) when the ``openid`` scope is asked, refresh tokens,
a userinfo endpoint behind a bearer token, discovery (``/.well-known/openid-configuration``) and
RP-initiated logout (``/logout``). It approves every login as ``user`` at once, so a test's
"browser" only has to follow its redirect."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

CLIENT_ID = "nbplane-cli"


@dataclass
class User:
    """Who the provider says logged in: ``preferred_username`` and, unless None, ``groups``."""

    name: str
    groups: list[str] | None = None


@dataclass
class Client(ClientMixin):
    """A public client (no secret) that may redirect to any loopback port, as RFC 8252 asks;
    the path is the CLI's ``/callback`` or the nbplane Jupyter extension's callback."""

    client_id: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)  # the CLI's callback, or a Jupyter server's
        return (
            parts.scheme == "http"
            and parts.hostname == "127.0.0.1"
            and (parts.path == "/callback" or parts.path.endswith("/nbplane/oauth/callback"))
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(time.time())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token(TokenMixin):
    access_token: str
    client_id: str
    scope: str
    user: User
    expires_at: float
    refresh_token: str | None = None

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> User:
        return self.user


@dataclass
class Provider:
    """The running provider: its endpoints, who it logs in, and what it issued."""

    url: str = ""
    user: User = field(default_factory=lambda: User("carol"))
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    refreshed: int = 0
    """Refresh tokens traded so far."""
    ended: list[dict[str, str]] = field(default_factory=list)
    """The RP-initiated logouts received, their query each."""
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "nbplane-tests"})
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_refresh(self) -> None:
        """Forget every refresh token issued, as when the person is disabled at the provider."""
        with self.lock:
            for token in self.tokens.values():
                token.refresh_token = None

    @property
    def oidc_settings(self) -> dict[str, str]:
        """The settings of an nbplane server whose oidc authenticator uses this provider."""
        return {
            "NBPLANE_AUTHENTICATOR": "oidc",
            "NBPLANE_OIDC_ISSUER": self.url,
            "NBPLANE_OIDC_CLIENT_ID": CLIENT_ID,
        }

    @property
    def settings(self) -> dict[str, str]:
        """The ``NBPLANE_OAUTH_*`` settings of an nbplane server that logs in here."""
        return {
            "NBPLANE_OAUTH_AUTHORIZE_URL": f"{self.url}/authorize",
            "NBPLANE_OAUTH_TOKEN_URL": f"{self.url}/token",
            "NBPLANE_OAUTH_USERINFO_URL": f"{self.url}/userinfo",
            "NBPLANE_OAUTH_CLIENT_ID": CLIENT_ID,
        }


def create_app(provider: Provider) -> Flask:
    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 (a list in authlib)

        def save_authorization_code(self, code: str, request: Any) -> None:
            payload = request.payload.data
            with provider.lock:
                provider.codes[code] = Code(
                    code,
                    request.client.client_id,
                    payload["redirect_uri"],
                    request.payload.scope,
                    request.user,
                    payload.get("code_challenge"),
                    payload.get("code_challenge_method"),
                    payload.get("nonce"),
                )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            with provider.lock:
                found = provider.codes.get(code)
            return found if found and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            with provider.lock:
                provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> User:
            return authorization_code.user

    def query_client(client_id: str) -> Client | None:
        return Client(client_id) if client_id == CLIENT_ID else None

    def save_token(token: dict[str, Any], request: Any) -> None:
        with provider.lock:
            provider.tokens[token["access_token"]] = Token(
                token["access_token"],
                request.client.client_id,
                token.get("scope", ""),
                request.user,
                time.time() + token["expires_in"],
                token.get("refresh_token"),
            )

    class OpenIDConnect(OpenIDCode):
        """ID tokens signed with the provider's key, naming the user and their groups."""

        def exists_nonce(self, nonce: str, request: Any) -> bool:
            return False

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            return provider.key

        def get_client_algorithm(self, client: Client) -> str:
            return "RS256"

        def get_encode_header(self, client: Client) -> dict[str, str]:
            return {"alg": "RS256", "kid": "nbplane-tests"}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return {"iss": provider.url, "aud": [client.client_id], "exp": int(time.time()) + 300}

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            return UserInfo(claims_of(user))

    class RefreshTokenGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 (a list in authlib)
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            with provider.lock:
                found = [t for t in provider.tokens.values() if t.refresh_token == refresh_token]
            return found[0] if found else None

        def authenticate_user(self, refresh_token: Token) -> User:
            return refresh_token.user

        def revoke_old_credential(self, refresh_token: Token) -> None:
            with provider.lock:
                refresh_token.refresh_token = None
                provider.refreshed += 1

    class Validator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Token | None:
            with provider.lock:
                return provider.tokens.get(token_string)

    app = Flask(__name__)
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(
        AuthorizationCodeGrant, [CodeChallenge(required=True), OpenIDConnect(require_nonce=False)]
    )
    server.register_grant(RefreshTokenGrant)
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(Validator())

    @app.get("/authorize")
    def authorize() -> Any:
        try:
            grant = server.get_consent_grant(end_user=provider.user)
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        return server.create_authorization_response(grant=grant, grant_user=provider.user)

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    @app.get("/userinfo")
    @require_oauth()  # type: ignore[untyped-decorator]  # authlib's decorator is unannotated
    def userinfo() -> Any:
        user = cast(Token, current_token).user  # a werkzeug proxy of the validated Token
        return jsonify(claims_of(user))

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        return jsonify(
            {
                "issuer": provider.url,
                "authorization_endpoint": f"{provider.url}/authorize",
                "token_endpoint": f"{provider.url}/token",
                "userinfo_endpoint": f"{provider.url}/userinfo",
                "jwks_uri": f"{provider.url}/jwks",
                "end_session_endpoint": f"{provider.url}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    @app.get("/jwks")
    def jwks() -> Any:
        return jsonify(KeySet([provider.key]).as_dict(private=False))

    @app.get("/logout")
    def logout() -> Any:
        with provider.lock:
            provider.ended.append(dict(request.args))
        return redirect(request.args.get("post_logout_redirect_uri") or f"{provider.url}/", 302)

    return app


def claims_of(user: User) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": f"id-{user.name}", "preferred_username": user.name}
    if user.groups is not None:
        claims["groups"] = user.groups
    return claims


@contextmanager
def running_provider() -> Iterator[Provider]:
    provider = Provider()
    server = make_server("127.0.0.1", 0, create_app(provider), threaded=True)
    provider.url = f"http://127.0.0.1:{server.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join()
