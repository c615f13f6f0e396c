"""The one place errors become HTTP responses: always JSON naming the field and the problem."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from nbplane import errors

log = logging.getLogger("nbplane.server")

STATUS_BY_ERROR: dict[type[errors.NbplaneError], int] = {
    errors.NotFound: 404,
    errors.InvalidInput: 422,
    errors.Conflict: 409,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.ConfigError: 400,
    errors.StoreError: 503,
}


def status_of(exc: errors.NbplaneError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(kind: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"error": kind, "message": message, **fields}


def _pointer(location: tuple[Any, ...] | list[Any]) -> str:
    return "/" + "/".join(str(part) for part in location)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.NbplaneError)
    async def nbplane_error(_: Request, exc: errors.NbplaneError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
        return JSONResponse(exc.to_dict(), status_code=status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"pointer": _pointer(error.get("loc", ())), "message": error.get("msg", "invalid")}
            for error in exc.errors()
        ]
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            detail = exc.errors()[0].get("ctx", {}).get("error", "")
            return JSONResponse(
                error_body(
                    "MalformedJSON",
                    f"the request body is not valid JSON: {detail}",
                    field="body",
                    errors=problems,
                ),
                status_code=400,
            )
        summary = "; ".join(f"{p['pointer']}: {p['message']}" for p in problems)
        return JSONResponse(error_body("InvalidRequest", summary, errors=problems), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("HTTPError", str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            error_body("InternalError", f"nbplane failed: {type(exc).__name__}"),
            status_code=500,
        )


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, declared or streamed; job archive
    uploads (paths ending in ``/versions``) may be up to ``upload_limit``."""

    def __init__(self, app: Any, limit: int, upload_limit: int) -> None:
        self.app, self.default_limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope.get("path", "").rstrip("/").endswith("/versions")
        limit = self.upload_limit if upload else self.default_limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Any, limit: int) -> None:
        response = JSONResponse(
            error_body("PayloadTooLarge", f"the request body is over {limit} bytes", field="body"),
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Any:
    return {"type": "http.disconnect"}
