"""The one place errors become HTTP responses: always JSON naming the field and the problem."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from nbplane import errors

log = logging.getLogger("nbplane.server")

STATUS_BY_ERROR: dict[type[errors.NbplaneError], int] = {
    errors.NotFound: 404,
    errors.InvalidInput: 422,
    errors.Conflict: 409,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.PayloadTooLarge: 413,
    errors.TooManyRequests: 429,
    errors.ConfigError: 400,
    errors.StoreError: 503,
    errors.Unreachable: 502,
}

MEANINGS = {
    400: "The body is not valid JSON, or a setting or option cannot be used",
    401: "No valid token: missing, unknown, revoked or expired",
    403: "Refused: a signed-in browser's change without the X-Nbplane-Csrf header",
    404: "Not found, or not yours (another team's or user's objects are not found either)",
    409: "It exists but cannot do that now",
    413: "The request body is over the server's limit",
    422: "Bad input: `field` names it, `errors` lists each problem with its JSON pointer",
    429: "Over a per-user limit; the message says what to stop",
    502: "A session's server did not answer",
}
"""What each error status means, for the OpenAPI document."""


class DescribeError(BaseModel):
    """Every error answer: what kind, in words, and the fields it is about."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="The kind, e.g. NotFound, InvalidRequest, PayloadTooLarge.")
    message: str
    field: str | None = Field(default=None, description="The input it is about, e.g. body.x.")
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Each problem: {pointer, message}."
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses an operation can answer besides those every
    operation of its kind can (see ``document_errors``)."""
    return {code: {"model": DescribeError, "description": MEANINGS[code]} for code in statuses}


def status_of(exc: errors.NbplaneError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(kind: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"error": kind, "message": message, **fields}


def _pointer(location: tuple[Any, ...] | list[Any]) -> str:
    return "/" + "/".join(str(part) for part in location)


def dotted(location: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "parameters", "x")`` as the field name ``body.parameters.x``."""
    return ".".join(str(part) for part in location)


def response_for(exc: errors.NbplaneError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
    return JSONResponse(exc.to_dict(), status_code=status_of(exc), headers=headers)


def document_errors(schema: dict[str, Any]) -> None:
    """Every operation of the OpenAPI document lists the error statuses it can answer, with
    the one error model: 401 and 403 where a token is needed (security), 404 where the path
    names an object, 422 where there is input, 400 and 413 where there is a body; others come
    from the route's own ``responses`` (a 5xx declared there with its own body keeps it).
    FastAPI's own validation error model is replaced, since the handler below answers with
    ``DescribeError``."""
    reference = {"$ref": "#/components/schemas/DescribeError"}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            statuses = set()
            if operation.get("security"):
                statuses.add(401)
                if method not in ("get", "head", "options"):
                    statuses.add(403)
            parameters = operation.get("parameters", [])
            if any(parameter.get("in") == "path" for parameter in parameters):
                statuses.add(404)
            if parameters or "requestBody" in operation:
                statuses.add(422)
            if "requestBody" in operation:
                statuses.update((400, 413))
            answers = operation.setdefault("responses", {})
            for status in sorted(statuses | {int(code) for code in answers if code[0] in "45"}):
                if status >= 500 and "content" in answers.get(str(status), {}):
                    continue  # not an error's answer but a state's (readiness: 503 + checks)
                answers[str(status)] = {
                    "description": MEANINGS.get(status, "Error"),
                    "content": {"application/json": {"schema": reference}},
                }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["DescribeError"] = DescribeError.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.NbplaneError)
    async def nbplane_error(_: Request, exc: errors.NbplaneError) -> JSONResponse:
        return response_for(exc)

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
        first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
        return JSONResponse(
            error_body("InvalidRequest", summary, field=dotted(first), errors=problems),
            status_code=422,
        )

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
