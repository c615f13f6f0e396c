"""The web console at ``/`` (static files in ``server/web``) and the browser's sign-in.

The console is one HTML page, one style sheet and ES modules compiled from
``labextension/console`` into ``server/web/console``, all served by this server: no network
beyond it. Signing in puts the pasted token into an HttpOnly cookie
(see server/auth.py for how that cookie is checked and why changes also need a header). With
another authenticator, ``/nbplane/login`` signs the browser in through it instead: at once for
whom a gateway's header or an application's cookie names, or, with an OpenID Connect provider,
by the authorization code flow with PKCE the server runs itself; either way a new token of the
user goes into the cookie, and signing out (``/nbplane/logout`` ends the provider's session
too) revokes it."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from nbplane.auth.logins import BROWSER_TOKEN_PREFIX
from nbplane.auth.models import CSRF_HEADER, DescribeCaller
from nbplane.errors import Forbidden, NbplaneError, Unauthorized
from nbplane.server.auth import COOKIE, NO_AUTH_CALLER, SignIn
from nbplane.server.deps import Auth, ServerLogins, presented
from nbplane.server.errors import responses

WEB = Path(__file__).resolve().parent.parent / "web"
"""The page's files, shipped inside the package."""

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The page runs only its own script and style: no inline code, nothing from elsewhere."""
API_POLICY = "sandbox"
"""API answers opened in a browser (an executed notebook's HTML, logs) run no script with the
page's origin, so a notebook's output cannot act with the signed-in cookie."""

OAUTH_CALLBACK = "/nbplane/oauth/callback"
"""Where the OAuth provider sends the browser back: register ``<server URL>/nbplane/oauth/
callback`` with it (the nbplane Jupyter extension's callback ends the same way)."""
OAUTH_COOKIE = "nbplane_oauth"
"""The login in progress (its state and PKCE verifier), readable only by the callback. Lax, not
Strict: the provider's redirect back is a navigation from another site."""
OAUTH_SECONDS = 600

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.post(
    "/api/v1/auth/sign-in",
    tags=["auth"],
    summary="Browser sign-in: check a token and keep it in an HttpOnly cookie",
    responses=responses(401, 403),
)
def sign_in(request: Request, auth: Auth, body: SignIn, response: Response) -> DescribeCaller:
    if not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(f"sign-in needs the {CSRF_HEADER} header", field=CSRF_HEADER.lower())
    if not auth.enabled:
        return NO_AUTH_CALLER
    found = auth.authenticate(body.token.strip(), "token")
    keep_signed_in(request, response, body.token.strip())
    return found


def keep_signed_in(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.post(
    "/api/v1/auth/sign-out",
    status_code=204,
    tags=["auth"],
    summary="Browser sign-out; a token made by the browser's sign-in is revoked",
)
def sign_out(request: Request, auth: Auth, logins: ServerLogins) -> Response:
    _end_sign_in(request, auth, logins)
    response = Response(status_code=204)
    _forget_cookie(request, response)
    return response


def _end_sign_in(request: Request, auth: Auth, logins: ServerLogins) -> None:
    """Revoke the browser's token if its sign-in made it (a pasted token stays)."""
    token = request.cookies.get(COOKIE)
    name = auth.name_of(token) if token and auth.enabled else None
    if name is not None and logins.is_login_token(name):
        auth.revoke_named(name)


def _forget_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )


def _callback_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + OAUTH_CALLBACK


def _back_to_page(error: str | None = None) -> RedirectResponse:
    """The page, which shows ``error`` (passed in the fragment, never sent to a server)."""
    return RedirectResponse("/" + (f"#{urlencode({'error': error})}" if error else ""), 303)


def browser_token_name() -> str:
    return f"{BROWSER_TOKEN_PREFIX}{secrets.token_hex(8)}"


@router.get("/nbplane/login", include_in_schema=False)
def browser_login(request: Request, auth: Auth, logins: ServerLogins) -> RedirectResponse:
    """The console's "Sign in with ..." button: a browser the authenticator recognises (a
    gateway's header, an application's cookie) is signed in at once; with a provider to log in
    at, the browser goes there."""
    authenticator = logins.authenticator
    try:
        if authenticator.browser_login:
            return RedirectResponse("/nbplane/oauth/login", 303)
        identity = authenticator.identify(presented(request)) if auth.enabled else None
        if identity is None:
            raise Unauthorized(
                f"this browser brings nothing the server's authenticator ({authenticator.name}) "
                "recognises: sign in with a token",
                field="authenticator",
            )
        made = logins.log_in(identity, browser_token_name())
    except NbplaneError as exc:
        return _back_to_page(exc.message)
    response = _back_to_page()
    keep_signed_in(request, response, made.token)
    return response


@router.get("/nbplane/oauth/login", include_in_schema=False)
def oauth_start(request: Request, logins: ServerLogins) -> RedirectResponse:
    """Send the browser to the provider, remembering this login's secrets in a cookie."""
    try:
        login = logins.authenticator.start_login(_callback_url(request))
    except NbplaneError as exc:
        return _back_to_page(exc.message)
    response = RedirectResponse(login.url, 302)
    response.set_cookie(
        OAUTH_COOKIE,
        login.secret,
        max_age=OAUTH_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=OAUTH_CALLBACK,
    )
    return response


@router.get(OAUTH_CALLBACK, include_in_schema=False)
def oauth_callback(request: Request, logins: ServerLogins) -> RedirectResponse:
    """Finish the login: trade the code, check the provider's tokens, make the user's token,
    sign the browser in."""
    try:
        secret = request.cookies.get(OAUTH_COOKIE, "")
        if not secret:
            raise Unauthorized(
                "this browser started no OAuth sign-in here, or took over "
                f"{OAUTH_SECONDS // 60} minutes: sign in again",
                field="state",
            )
        identity = logins.authenticator.finish_login(
            _callback_url(request), secret, request.query_params
        )
        made = logins.log_in(identity, browser_token_name())
        response = _back_to_page()
        keep_signed_in(request, response, made.token)
    except NbplaneError as exc:
        response = _back_to_page(exc.message)
    response.delete_cookie(
        OAUTH_COOKIE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=OAUTH_CALLBACK,
    )
    return response


@router.get("/nbplane/logout", include_in_schema=False)
def browser_logout(request: Request, auth: Auth, logins: ServerLogins) -> RedirectResponse:
    """Sign the browser out, ending its login, and at the provider too when it offers that
    (RP-initiated logout), coming back to the page."""
    _end_sign_in(request, auth, logins)
    page = str(request.base_url)
    try:
        elsewhere = logins.authenticator.logout_url(page)
    except NbplaneError:  # the provider cannot be asked: signed out here at least
        elsewhere = None
    response = RedirectResponse(elsewhere or "/", 303)
    _forget_cookie(request, response)
    return response


class SecurityHeaders:
    """Adds the page's content policy to ``/`` and ``/web``, and ``sandbox`` to ``/api``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" or path.startswith("/web/"):
            policy = PAGE_POLICY
        elif path.startswith("/api/"):
            policy = API_POLICY
        else:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", policy.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    """The page, its files, the sign-in routes and the security headers."""
    app.include_router(router)
    app.mount("/web", StaticFiles(directory=WEB), name="web")
    app.add_middleware(SecurityHeaders)
