"""Typed client of nbplane's REST API, shared by the CLI, the magics and the JupyterLab extension.

Each method is one endpoint and returns the server's own pydantic model; an error response
becomes the matching ``NbplaneError`` with the server's message and fields, so callers handle
remote and local failures alike.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from nbplane import errors
from nbplane.apis.models import (
    DescribeExecution,
    DescribeNotebook,
    ExecutionPage,
    ListExecutionsQuery,
    SubmitExecution,
)
from nbplane.auth.models import (
    CSRF_HEADER,
    CreateToken,
    CreateUser,
    DescribeAuthenticator,
    DescribeCaller,
    DescribeLogin,
    DescribeLogout,
    DescribeNewToken,
    DescribeOAuth,
    DescribeTeam,
    DescribeToken,
    DescribeUser,
    ExchangeOAuthToken,
    UpdateUser,
)
from nbplane.client.credentials import load_login, normalize_url
from nbplane.deployments.models import (
    CreateJob,
    DeployJob,
    DescribeDeployment,
    DescribeJob,
    DescribeJobExecution,
    DescribeSecrets,
    DescribeVersion,
    ExecuteJob,
    JobExecutionPage,
    JobExecutionStatus,
    SetValues,
    UpdateDeployment,
)
from nbplane.sessions.models import (
    CreateConnection,
    CreateSession,
    DescribeConnection,
    DescribeResourceClass,
    DescribeSession,
    GrantConnection,
)
from nbplane.settings import get_settings

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)
"""A followed log may be silent for as long as a step runs."""
RESUME_DELAY = 0.5

ERROR_BY_STATUS: dict[int, type[errors.NbplaneError]] = {
    400: errors.ConfigError,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    429: errors.TooManyRequests,
    503: errors.StoreError,
}


class NbplaneClient:
    """A session with one nbplane server; close it, or use it as a context manager."""

    def __init__(
        self, url: str, token: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = normalize_url(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    @classmethod
    def from_credentials(cls, url: str | None = None, token: str | None = None) -> NbplaneClient:
        """``url``/``token`` when given (a command's ``--url``/``--token``), else
        ``NBPLANE_URL``/``NBPLANE_TOKEN`` when set, else what ``nbplane login`` saved; a saved
        token is never sent to a server other than the one it was saved for."""
        settings = get_settings()
        saved = load_login()
        url = url or settings.url
        url = normalize_url(url) if url else None
        if url is None and saved is not None:
            url = saved.url
        if url is None:
            raise errors.ConfigError(
                "no nbplane server: run `nbplane login --url URL`, or set NBPLANE_URL and "
                "NBPLANE_TOKEN",
                field="url",
            )
        token = token or settings.token or (saved.token if saved and saved.url == url else None)
        if token is None:
            raise errors.ConfigError(
                f"no token for {url}: run `nbplane login --url {url}`, or set NBPLANE_TOKEN",
                field="token",
            )
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NbplaneClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- who am I

    def me(self) -> DescribeCaller:
        return DescribeCaller.model_validate(self._json("GET", "/api/v1/me"))

    # -- logging in without a token yet

    def authenticator(self) -> DescribeAuthenticator:
        """How the server lets people log in besides its own tokens."""
        return DescribeAuthenticator.model_validate(self._json("GET", "/api/v1/auth"))

    def request_login(self, source_token: str | None = None) -> DescribeLogin:
        """A new nbplane token for whom this request identifies to the server's authenticator
        (a gateway in front of it, or ``source_token``: the identity source's own token)."""
        headers = {CSRF_HEADER: "1"}  # what a gateway's sign-in needs: not another site's form
        if source_token:
            headers["Authorization"] = f"Bearer {source_token}"
        data = self._json("POST", "/api/v1/auth/login", json={}, headers=headers)
        return DescribeLogin.model_validate(data)

    def logout(self) -> DescribeLogout:
        """End this client's login: its token is revoked if a login made it."""
        return DescribeLogout.model_validate(self._json("POST", "/api/v1/auth/logout"))

    def oauth_config(self) -> DescribeOAuth:
        return DescribeOAuth.model_validate(self._json("GET", "/api/v1/auth/oauth"))

    def oauth_login(self, tokens: ExchangeOAuthToken) -> DescribeLogin:
        """A new nbplane token for the OpenID provider's user whose login these tokens are."""
        body = tokens.model_dump(mode="json", exclude_none=True)
        data = self._json("POST", "/api/v1/auth/oauth/token", json=body)
        return DescribeLogin.model_validate(data)

    # -- users, teams and tokens (auth.admin.ManageAuth)

    def list_users(self) -> list[DescribeUser]:
        return _USERS.validate_python(self._json("GET", USERS))

    def create_user(self, request: CreateUser) -> DescribeUser:
        body = request.model_dump(mode="json")
        return DescribeUser.model_validate(self._json("POST", USERS, json=body))

    def get_user(self, name: str) -> DescribeUser:
        return DescribeUser.model_validate(self._json("GET", _user(name)))

    def update_user(self, name: str, changes: UpdateUser) -> DescribeUser:
        body = changes.model_dump(mode="json", exclude_unset=True)
        return DescribeUser.model_validate(self._json("PATCH", _user(name), json=body))

    def delete_user(self, name: str) -> None:
        self._request("DELETE", _user(name))

    def join_team(self, user: str, team: str) -> DescribeUser:
        data = self._json("PUT", f"{_user(user)}/teams/{_segment(team)}")
        return DescribeUser.model_validate(data)

    def leave_team(self, user: str, team: str) -> DescribeUser:
        data = self._json("DELETE", f"{_user(user)}/teams/{_segment(team)}")
        return DescribeUser.model_validate(data)

    def list_teams(self) -> list[DescribeTeam]:
        return _TEAMS.validate_python(self._json("GET", "/api/v1/teams"))

    def create_token(self, request: CreateToken) -> DescribeNewToken:
        body = request.model_dump(mode="json", exclude_none=True)
        return DescribeNewToken.model_validate(self._json("POST", TOKENS, json=body))

    def list_tokens(self, user: str | None = None) -> list[DescribeToken]:
        params = {} if user is None else {"user": user}
        return _TOKENS.validate_python(self._json("GET", TOKENS, params=params))

    def revoke_token(self, name: str) -> None:
        self._request("DELETE", f"{TOKENS}/{_segment(name)}")

    # -- jobs

    def list_jobs(self, team: str) -> list[DescribeJob]:
        return _JOBS.validate_python(self._json("GET", _jobs(team)))

    def create_job(self, team: str, job: CreateJob) -> DescribeJob:
        body = job.model_dump(mode="json")
        return DescribeJob.model_validate(self._json("POST", _jobs(team), json=body))

    def get_job(self, team: str, job: str) -> DescribeJob:
        return DescribeJob.model_validate(self._json("GET", _job(team, job)))

    def delete_job(self, team: str, job: str, *, force: bool = False) -> None:
        self._request("DELETE", _job(team, job), params={"force": _flag(force)})

    # -- versions

    def upload_version(self, team: str, job: str, archive: bytes) -> DescribeVersion:
        """Upload a zip made by ``nbplane job export``; the same bytes twice are one version."""
        response = self._request(
            "POST",
            f"{_job(team, job)}/versions",
            content=archive,
            headers={"Content-Type": "application/zip"},
        )
        return DescribeVersion.model_validate(response.json())

    def list_versions(self, team: str, job: str) -> list[DescribeVersion]:
        return _VERSIONS.validate_python(self._json("GET", f"{_job(team, job)}/versions"))

    def download_version(self, team: str, job: str, version: str) -> bytes:
        path = f"{_job(team, job)}/versions/{_segment(version)}/archive"
        return self._request("GET", path).content

    # -- deployment

    def deploy(self, team: str, job: str, deployment: DeployJob) -> DescribeDeployment:
        body = deployment.model_dump(mode="json")
        data = self._json("PUT", f"{_job(team, job)}/deployment", json=body)
        return DescribeDeployment.model_validate(data)

    def update_deployment(
        self, team: str, job: str, changes: UpdateDeployment
    ) -> DescribeDeployment:
        body = changes.model_dump(mode="json", exclude_unset=True)
        data = self._json("PATCH", f"{_job(team, job)}/deployment", json=body)
        return DescribeDeployment.model_validate(data)

    def undeploy(self, team: str, job: str) -> None:
        self._request("DELETE", f"{_job(team, job)}/deployment")

    # -- executions

    def execute(self, team: str, job: str, request: ExecuteJob) -> DescribeJobExecution:
        body = request.model_dump(mode="json", exclude_none=True)
        data = self._json("POST", f"{_job(team, job)}/executions", json=body)
        return DescribeJobExecution.model_validate(data)

    def list_executions(
        self,
        team: str,
        job: str,
        *,
        status: JobExecutionStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobExecutionPage:
        """A page of the job's executions, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status.value
        data = self._json("GET", f"{_job(team, job)}/executions", params=params)
        return JobExecutionPage.model_validate(data)

    def get_execution(
        self, team: str, job: str, execution: str, *, wait: float | None = None
    ) -> DescribeJobExecution:
        """The execution; with ``wait``, the server answers when it is final or after that many
        seconds, whichever comes first."""
        data = self._json("GET", _execution(team, job, execution), **_waiting(wait))
        return DescribeJobExecution.model_validate(data)

    def cancel_execution(self, team: str, job: str, execution: str) -> DescribeJobExecution:
        data = self._json("POST", f"{_execution(team, job, execution)}/cancel")
        return DescribeJobExecution.model_validate(data)

    def read_logs(self, team: str, job: str, execution: str, offset: int = 0) -> tuple[str, int]:
        """The log from character ``offset`` as written so far, and the offset to ask next."""
        response = self._request(
            "GET",
            f"{_execution(team, job, execution)}/logs",
            params={"offset": offset, "follow": "false"},
        )
        following = response.headers.get("X-Log-Offset")
        return response.text, int(following) if following else offset + len(response.text)

    def follow_logs(self, team: str, job: str, execution: str, offset: int = 0) -> Iterator[str]:
        """The log from character ``offset`` as it is written, until the execution is final; a
        dropped stream is resumed where it broke off."""
        path = f"{_execution(team, job, execution)}/logs"
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            decoder.reset()  # a character cut by a broken stream is asked for again
            with self._stream("GET", path, params={"offset": offset, "follow": "true"}) as stream:
                try:
                    for chunk in stream.iter_bytes():
                        if text := decoder.decode(chunk):
                            offset += len(text)
                            yield text
                except httpx.TransportError:
                    time.sleep(RESUME_DELAY)  # the stream broke: resume at the offset reached
            if self.get_execution(team, job, execution).status.final:
                rest, _ = self.read_logs(team, job, execution, offset)
                if rest:
                    yield rest
                return

    # -- notebook APIs and their executions

    def list_notebooks(self) -> list[DescribeNotebook]:
        return _NOTEBOOKS.validate_python(self._json("GET", NOTEBOOKS))

    def get_notebook(self, name: str) -> DescribeNotebook:
        return DescribeNotebook.model_validate(self._json("GET", f"{NOTEBOOKS}/{_segment(name)}"))

    def submit_api_execution(
        self, name: str, request: SubmitExecution, *, wait: float | None = None
    ) -> DescribeExecution:
        """A new execution of the notebook API; with ``wait``, as :meth:`get_api_execution`."""
        data = self._json(
            "POST",
            f"{NOTEBOOKS}/{_segment(name)}/executions",
            json=request.model_dump(mode="json"),
            **_waiting(wait),
        )
        return DescribeExecution.model_validate(data)

    def list_api_executions(self, query: ListExecutionsQuery) -> ExecutionPage:
        """A page of the caller's executions of notebook APIs (admins: everyone's), newest
        first."""
        params = query.model_dump(mode="json", exclude_none=True)
        return ExecutionPage.model_validate(self._json("GET", API_EXECUTIONS, params=params))

    def get_api_execution(self, execution: str, *, wait: float | None = None) -> DescribeExecution:
        """The execution; with ``wait`` (at most 300), the server answers when it is final or
        after that many seconds, whichever comes first."""
        data = self._json("GET", _api_execution(execution), **_waiting(wait))
        return DescribeExecution.model_validate(data)

    def cancel_api_execution(self, execution: str) -> DescribeExecution:
        data = self._json("POST", f"{_api_execution(execution)}/cancel")
        return DescribeExecution.model_validate(data)

    def api_execution_output(self, execution: str) -> Any:
        """What the notebook saved with ``save_output``; NotFound when it saved nothing."""
        return self._json("GET", f"{_api_execution(execution)}/output")

    def api_execution_html(self, execution: str) -> str:
        """The executed notebook as one HTML page."""
        return self._request("GET", f"{_api_execution(execution)}/html").text

    # -- properties and secrets

    def get_properties(self, team: str, job: str) -> dict[str, Any]:
        return _PROPERTIES.validate_python(self._json("GET", f"{_job(team, job)}/properties"))

    def set_properties(self, team: str, job: str, values: dict[str, Any]) -> dict[str, Any]:
        """Set these properties; a ``None`` value removes the key. Returns all of them."""
        body = SetValues(values=values).model_dump(mode="json")
        data = self._json("PATCH", f"{_job(team, job)}/properties", json=body)
        return _PROPERTIES.validate_python(data)

    def list_secrets(self, team: str, job: str) -> DescribeSecrets:
        return DescribeSecrets.model_validate(self._json("GET", f"{_job(team, job)}/secrets"))

    def set_secrets(self, team: str, job: str, values: dict[str, Any]) -> DescribeSecrets:
        """Set these secrets; a ``None`` value removes the key. Only names come back."""
        body = SetValues(values=values).model_dump(mode="json")
        data = self._json("PATCH", f"{_job(team, job)}/secrets", json=body)
        return DescribeSecrets.model_validate(data)

    # -- sessions

    def session_resource_classes(self) -> list[DescribeResourceClass]:
        return _CLASSES.validate_python(self._json("GET", "/api/v1/sessions/resource-classes"))

    def create_session(self, request: CreateSession) -> DescribeSession:
        body = request.model_dump(mode="json", exclude_none=True)
        return DescribeSession.model_validate(self._json("POST", "/api/v1/sessions", json=body))

    def list_sessions(self, *, everyone: bool = False) -> list[DescribeSession]:
        """The caller's sessions; with ``everyone``, all users' (admins)."""
        data = self._json("GET", "/api/v1/sessions", params={"all": _flag(everyone)})
        return _SESSIONS.validate_python(data)

    def get_session(self, session: str) -> DescribeSession:
        return DescribeSession.model_validate(self._json("GET", _session(session)))

    def follow_session(self, session: str) -> Iterator[DescribeSession]:
        """The session each time it changes, until it is running, failed or hibernated."""
        from httpx_sse import EventSource

        with self._stream("GET", f"{_session(session)}/events") as response:
            for event in EventSource(response).iter_sse():
                if event.event == "session":
                    yield DescribeSession.model_validate_json(event.data)

    def session_logs(self, session: str, tail: int = 200) -> str:
        return self._request("GET", f"{_session(session)}/logs", params={"tail": tail}).text

    def hibernate_session(self, session: str) -> DescribeSession:
        data = self._json("POST", f"{_session(session)}/hibernate")
        return DescribeSession.model_validate(data)

    def resume_session(self, session: str) -> DescribeSession:
        return DescribeSession.model_validate(self._json("POST", f"{_session(session)}/resume"))

    def delete_session(self, session: str, *, purge: bool = False) -> None:
        """Stop it for good; with ``purge`` its workspace is deleted too."""
        self._request("DELETE", _session(session), params={"purge": _flag(purge)})

    # -- connections (admins)

    def create_connection(self, connection: CreateConnection) -> DescribeConnection:
        body = connection.model_dump(mode="json")
        return DescribeConnection.model_validate(self._json("POST", CONNECTIONS, json=body))

    def list_connections(self) -> list[DescribeConnection]:
        return _CONNECTIONS.validate_python(self._json("GET", CONNECTIONS))

    def delete_connection(self, name: str) -> None:
        self._request("DELETE", f"{CONNECTIONS}/{_segment(name)}")

    def grant_connection(self, name: str, grant: GrantConnection) -> DescribeConnection:
        body = grant.model_dump(mode="json", exclude_none=True)
        data = self._json("POST", f"{CONNECTIONS}/{_segment(name)}/grants", json=body)
        return DescribeConnection.model_validate(data)

    def revoke_connection(self, name: str, grant: GrantConnection) -> DescribeConnection:
        body = grant.model_dump(mode="json", exclude_none=True)
        data = self._json("DELETE", f"{CONNECTIONS}/{_segment(name)}/grants", json=body)
        return DescribeConnection.model_validate(data)

    # -- transport

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any endpoint, its errors as ours (for APIs beside the user's, e.g. an execution's)."""
        return self._request(method, path, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_error:
            raise self._error(response)
        return response

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """The response, its body read as it arrives; failures to connect and error responses
        become ours."""
        request = self._http.build_request(method, path, timeout=STREAM_TIMEOUT, **kwargs)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        try:
            if response.is_error:
                response.read()
                raise self._error(response)
            yield response
        finally:
            response.close()

    def _unreachable(self, exc: httpx.TransportError) -> errors.ConfigError:
        reason = str(exc) or type(exc).__name__
        return errors.ConfigError(
            f"cannot reach the nbplane server at {self.url}: {reason}; is it running, and is "
            "that the right URL (`nbplane login --url`, NBPLANE_URL)?",
            url=self.url,
        )

    def _error(self, response: httpx.Response) -> errors.NbplaneError:
        """The server's error body as the matching exception, its fields kept."""
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            answer = f"{response.status_code} {response.reason_phrase}"
            body = {"message": f"{self.url} answered {answer}{': ' + text if text else ''}"}
        fields = {key: value for key, value in body.items() if key not in ("error", "message")}
        fields["status"] = response.status_code
        return _error_class(response.status_code, body.get("error"))(body["message"], **fields)


def _error_class(status: int, name: Any) -> type[errors.NbplaneError]:
    """By status, refined by the server's class name when it is a kind of that (e.g. a
    ContractError is a Conflict); an unknown status is an error of the server itself."""
    base = ERROR_BY_STATUS.get(status, errors.NbplaneError)
    named = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(named, type) and issubclass(named, base):
        return named
    return base


def _segment(value: str) -> str:
    return quote(value, safe="")


def _jobs(team: str) -> str:
    return f"/api/v1/teams/{_segment(team)}/jobs"


def _job(team: str, job: str) -> str:
    return f"{_jobs(team)}/{_segment(job)}"


def _execution(team: str, job: str, execution: str) -> str:
    return f"{_job(team, job)}/executions/{_segment(execution)}"


def _api_execution(execution: str) -> str:
    return f"{API_EXECUTIONS}/{_segment(execution)}"


def _waiting(wait: float | None) -> dict[str, Any]:
    """The query and a read timeout long enough for a request the server holds ``wait`` s."""
    if wait is None:
        return {}
    return {"params": {"wait": wait}, "timeout": httpx.Timeout(wait + 30.0, connect=10.0)}


NOTEBOOKS = "/api/v1/notebooks"
API_EXECUTIONS = "/api/v1/executions"
CONNECTIONS = "/api/v1/connections"
USERS = "/api/v1/users"
TOKENS = "/api/v1/tokens"


def _user(name: str) -> str:
    return f"{USERS}/{_segment(name)}"


def _session(session: str) -> str:
    return f"/api/v1/sessions/{_segment(session)}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


_JOBS = TypeAdapter(list[DescribeJob])
_NOTEBOOKS = TypeAdapter(list[DescribeNotebook])
_VERSIONS = TypeAdapter(list[DescribeVersion])
_PROPERTIES = TypeAdapter(dict[str, Any])
_CLASSES = TypeAdapter(list[DescribeResourceClass])
_SESSIONS = TypeAdapter(list[DescribeSession])
_CONNECTIONS = TypeAdapter(list[DescribeConnection])
_USERS = TypeAdapter(list[DescribeUser])
_TEAMS = TypeAdapter(list[DescribeTeam])
_TOKENS = TypeAdapter(list[DescribeToken])
