"""The web page at ``/`` (static files in ``server/web``) and the browser's sign-in.

The page is plain HTML with one script and one style sheet, served by this server, so it needs
no build and no network beyond it. Signing in puts the pasted token into an HttpOnly cookie
(see server/auth.py for how that cookie is checked and why changes also need a header)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from nbplane.control.models import DescribeCaller
from nbplane.errors import Forbidden
from nbplane.server.auth import COOKIE, CSRF_HEADER, NO_AUTH_CALLER, SignIn, authenticate

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

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.post(
    "/api/v1/auth/sign-in",
    tags=["auth"],
    summary="Browser sign-in: check a token and keep it in an HttpOnly cookie",
)
def sign_in(request: Request, body: SignIn, response: Response) -> DescribeCaller:
    if not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(f"sign-in needs the {CSRF_HEADER} header", field=CSRF_HEADER.lower())
    if not request.app.state.auth:
        return NO_AUTH_CALLER
    found = authenticate(request, body.token.strip(), "token")
    response.set_cookie(
        COOKIE,
        body.token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return found


@router.post("/api/v1/auth/sign-out", status_code=204, tags=["auth"], summary="Browser sign-out")
def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
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
