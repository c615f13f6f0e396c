"""``app``: another application owns the users, as OpenHexa does for its notebooks. nbplane
forwards what the person brings (the application's session cookie from the browser, or a token
to ``POST /api/v1/auth/login``) to the application's endpoint (NBPLANE_APP_URL) and believes its
answer::

    {"user": "ada", "groups": ["analytics"],
     "connections": [{"name": "warehouse", "kind": "database", "values": {"url": "..."}}]}

``groups`` (optional) replace the user's teams; ``connections`` (optional) are stored for the
user as an admin's connections are (values sealed) and granted to them. Answers are reused for
NBPLANE_APP_CACHE_SECONDS; the application refusing is a 401, the application failing a 502 that
says so, never a 500."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbplane.auth.authenticators.base import Authenticator, Identity, Presented
from nbplane.errors import ConfigError, Unauthorized, Unreachable
from nbplane.sessions.models import CreateConnection

APP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
CACHE_SIZE = 1024


class AppAnswer(BaseModel):
    """What the application says of the person it recognised."""

    model_config = ConfigDict(extra="ignore")

    user: str = Field(min_length=1, max_length=255)
    groups: list[str] | None = None
    connections: list[CreateConnection] = Field(default_factory=list)


@dataclass
class AppAuthenticator(Authenticator):
    name: ClassVar[str] = "app"
    identifies_requests: ClassVar[bool] = True
    url: str = field(init=False)
    _answers: dict[str, tuple[Identity, float]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if not self.settings.app_url:
            raise ConfigError(
                "the app authenticator needs NBPLANE_APP_URL: the application's endpoint that "
                "says who a session cookie or token is",
                field="app_url",
            )
        self.url = self.settings.app_url

    @property
    def provider(self) -> str:
        return httpx.URL(self.url).netloc.decode() or "the application"

    def identify(self, presented: Presented) -> Identity | None:
        cookie = presented.cookies.get(self.settings.app_cookie)
        scheme, _, token = presented.headers.get("authorization", "").partition(" ")
        if cookie:
            forwarded = {"Cookie": f"{self.settings.app_cookie}={cookie}"}
        elif scheme.lower() == "bearer" and token.strip():
            forwarded = {"Authorization": f"Bearer {token.strip()}"}
        else:
            return None
        key = hashlib.sha256(repr(sorted(forwarded.items())).encode()).hexdigest()
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        identity = self._ask(forwarded)
        with self._lock:
            if len(self._answers) > CACHE_SIZE:  # bounded: old answers go, they are a shortcut
                self._answers.clear()
            self._answers[key] = (identity, time.monotonic() + self.settings.app_cache_seconds)
        return identity

    def _ask(self, forwarded: dict[str, str]) -> Identity:
        """The application's word on what the person brought."""
        try:
            response = httpx.get(self.url, headers=forwarded, timeout=APP_TIMEOUT)
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"cannot reach the application that says who is signed in ({self.url}): "
                f"{str(exc) or type(exc).__name__}",
                field="app_url",
            ) from None
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"the application at {self.url} does not know this sign-in "
                f"({response.status_code}); sign in to it again",
                field="cookie" if "Cookie" in forwarded else "authorization",
            )
        answer = self._answer(response)
        return Identity(
            user=answer.user,
            groups=None if answer.groups is None else tuple(answer.groups),
            connections=tuple(answer.connections),
        )

    def _answer(self, response: httpx.Response) -> AppAnswer:
        problem = f"answered {response.status_code}"
        if response.is_success:
            try:
                return AppAnswer.model_validate(response.json())
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                problem = f"answered an unusable {where or 'object'}: {first['msg']}"
            except ValueError:
                problem = "answered no JSON"
        raise Unreachable(
            f"the application that says who is signed in ({self.url}) {problem}; expected "
            '{"user": ..., "groups": [...], "connections": [...]}',
            field="app_url",
        )
