"""HTTP handlers of nbplane's Jupyter server extension: the contract the JupyterLab front end
(``labextension/``) is built against. Changes to it are additive only.

Every route is under ``{base_url}nbplane/``, answers JSON (except ``download`` and the OAuth
callback page) and needs the Jupyter server's own authentication (cookie or ``Authorization: token
...``; write requests carry ``X-XSRFToken`` as every Jupyter API call does): a request without it
gets 403, the callback page a redirect to Jupyter's login. Errors are ``{"error": <kind>,
"message": <words for people>, "field": <the input at fault>, ...}`` with a 4xx status: 400 bad
value, 401 not logged in to an nbplane server (or the token was refused), 404 unknown id, 409 busy,
422 a field missing, of the wrong type or outside the Jupyter root (``errors`` then lists each
problem as ``{"pointer": "/field", "message": ...}``). Bodies are JSON objects; unknown fields are
refused. Paths (``directory``) are relative to the Jupyter root directory, as the file browser
shows them.

Login (the token is kept by the Jupyter server in ``NBPLANE_HOME/credentials.json``, the file
``nbplane login`` writes, and never sent to the browser):

- ``GET status[?url=SERVER]`` -> ``{logged_in, server_url, user, admin, teams, in_session,
  oauth_available, message}``. ``in_session``: NBPLANE_URL and NBPLANE_TOKEN come from the
  environment (inside an nbplane session): logged in already, logout cannot undo that.
  ``oauth_available``: the server at ``url`` (default: the one logged in to) offers OAuth login.
  ``message`` says why, e.g. when the saved token was refused or the server is unreachable.
- ``POST login {url, token}`` -> the status as above; 401 when the server refuses the token.
- ``POST logout`` -> the status as above.
- ``GET oauth/start?url=SERVER`` -> ``{authorize_url, redirect_uri}``: open ``authorize_url`` in a
  new tab. The provider sends the browser back to ``redirect_uri``
  (``{base_url}nbplane/oauth/callback`` on this Jupyter server, as the browser reaches it, so
  JupyterHub's ``/user/NAME/`` prefix is kept; behind a proxy that ends TLS, Jupyter must
  trust its X-Forwarded headers (``ServerApp.trust_xheaders``) to see https; the provider must
  allow the callback as a redirect URI);
  the callback saves the login and shows "logged in, you can close this tab" (or the reason it
  failed, with a 4xx). Poll ``status`` to see the result.

Local jobs and runs:

- ``POST jobs {name, team?, directory?}`` -> 201 ``{directory, name, team, steps}``: a new job
  folder ``NAME`` (from the scaffold: a notebook of step cells and ``config.ini``) inside the
  folder ``directory`` (default: the root). ``directory`` in the answer is the new job's own.
- ``GET job?directory=DIR`` -> ``{directory, name, team, steps}``; ``steps`` in run order:
  ``[{order (1-based), name, file, kind: notebook|python|sql, cell_index (0-based position in
  the notebook's cells, null for files), cell_id, sql (bool)}]``. 400 with ``file`` when a
  notebook cannot be read or the folder has no step yet.
- ``POST jobs {name, notebook: PATH}``: the new job folder gets a copy of that notebook
  instead of the example (every code cell tagged a step when none is yet).
- ``POST job/notebook {directory, to?}`` -> 201 ``{notebook, directory, steps, copied}``: the
  job's steps (``.py``, ``.sql`` and notebook step cells) as one notebook of step cells in run
  order (``nbplane job to-notebook``), at ``to`` (default ``DIR-notebook/NAME.ipynb``) in a new
  job folder (``directory``) with the job's configuration files (``copied``). 400 with
  ``file`` when a step cannot be converted.
- ``GET history[?limit=N]`` -> ``{runs: [...]}``: nbplane's run records of every job under the
  Jupyter root (what ``nbplane job runs`` lists, also runs started in a terminal), newest
  first (default 50, at most 500): ``{id, number, directory, job, status, started_at,
  finished_at, duration, arguments, resumed, steps, failing_step}``; ``failing_step``
  ``{name, file, cell, message, summary}`` (``summary``: the error alone, e.g.
  ``ValueError: no rows``) or null.
- ``POST runs {directory, arguments?: object, resume?: bool, from_step?: str}`` -> 201
  ``{id}``: runs ``nbplane job run`` in a subprocess. ``from_step``: a step name
  (``10_a.ipynb#3``), file, cell id or 1-based number. 409 when that job runs already.
- ``GET runs[?directory=DIR]`` -> ``{runs: [run, ...]}`` newest first, as below; the runs this
  Jupyter server started (they outlive page reloads, not a server restart).
- ``GET runs/ID`` -> run: ``{id, directory, status: queued|running|succeeded|failed|cancelled,
  run_id (nbplane's id of the run record), run_number (the run's number among the job's runs,
  for `nbplane job show-run`), created_at, finished_at, steps:
  [{order, name, file, kind, cell_index, cell_id, sql, status: pending|running|succeeded|
  failed|skipped|not run, reason, started_at, finished_at}], error, log_size}``. ``error`` when
  failed: ``{step, file, cell_index, cell_id, line, message, summary, traceback}`` (the failing
  step cell; ``line`` within the cell); a run that failed before its first step has only
  ``message``.
- ``GET runs/ID/log?offset=N`` -> ``{text, offset}``: the log from ``offset`` (0 first); ask
  again with the returned offset while the run is not final. Offsets are bytes (``log_size``).
- ``DELETE runs/ID`` -> the run, ``cancelled``: its process is stopped.
- ``GET job?directory=DIR`` also has ``failure``: where the job last failed, from its run
  records (``{step, file, cell_index, cell_id, line, message, summary, traceback,
  run_number}``), null when no failure is left (a later run passed that step): the front end
  marks that cell again when the notebook opens, after a reload too.
- ``GET runs/ID/outputs`` -> ``{run_number, steps: [{order, file, cell_index, cell_id, status,
  outputs}]}``: the nbformat outputs of each notebook step cell that ran (succeeded or
  failed), to show in the open notebook. 404 before the run has a record.
- ``GET runs/ID/page`` -> the executed notebooks as one HTML page (``nbplane job show-run
  --html``), sandboxed (no scripts, its own origin) since outputs are the job's HTML.

Remote (the logged-in nbplane server; 401 ``field: login`` when not logged in):

- ``POST deploy {directory, team?, name?, schedule?, timezone?, enabled?, arguments?, reason?,
  run_first?: bool}`` -> 201 ``{team, name, created, version, deployment, execution}``: uploads
  the job as a version and deploys it (team and name default to the job's config, then the
  caller's only team); ``schedule`` is a cron expression, ``""`` removes it; left out, a
  redeploy keeps the deployed values. ``run_first``: execute it at once (``execution``, else
  null). Schedule errors come back from the server as 422 with ``field``.
- ``GET jobs`` -> ``{user, teams, jobs: [{name, team, description, deployment|null,
  last_executions: [execution...]}]}`` of every team of the caller.
- ``GET jobs/TEAM/NAME`` -> the job as above plus ``executions`` (latest 20) and
  ``properties``. Executions: ``{id, status: queued|running|completed|failed|timed_out|
  cancelled, reason, started_by, created_at, started_at, finished_at, arguments, steps, ...}``.
- ``PATCH jobs/TEAM/NAME/deployment {enabled}`` -> the deployment: pause (false) or resume
  its schedule.
- ``POST jobs/TEAM/NAME/executions {arguments?}`` -> 201 the execution.
- ``GET jobs/TEAM/NAME/executions/ID/logs?offset=N`` -> ``{text, offset}`` (characters).
- ``GET jobs/TEAM/NAME/download[?version=V]`` -> the job's zip (``application/zip``; default
  the deployed version, else the newest upload).
- ``DELETE jobs/TEAM/NAME[?force=true]`` -> 204; ``force`` cancels running executions first
  (409 without it while any runs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, ValidationError

from nbplane import errors
from nbplane.client import forget_login
from nbplane.client.deploy import checked_name, current_version, deploy_directory
from nbplane.deployments.models import ExecuteJob, UpdateDeployment
from nbplane.jobs.definition import Job, load_job
from nbplane.jobs.models import DescribeRun, StepStatus
from nbplane.jupyter.login import OAuthLogins, describe_login, log_in, remote_client
from nbplane.jupyter.models import (
    ConvertJob,
    CreateJobDirectory,
    DeployDirectory,
    LogIn,
    PauseDeployment,
    StartRun,
)
from nbplane.jupyter.runs import LocalRuns, describe_steps, inside_root
from nbplane.server.errors import status_of

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)
EXECUTIONS_SHOWN = 20
HISTORY_SHOWN = 50
HISTORY_MAX = 500


def invalid(exc: ValidationError) -> errors.InvalidInput:
    """A request body's problems, each at its field."""
    problems = [
        {
            "pointer": "/" + "/".join(str(part) for part in problem["loc"]),
            "message": problem["msg"],
        }
        for problem in exc.errors()
    ]
    first = exc.errors()[0]["loc"]
    summary = "; ".join(f"{p['pointer'][1:] or 'body'}: {p['message']}" for p in problems)
    return errors.InvalidInput(
        summary, field=".".join(str(part) for part in first) or "body", errors=problems
    )


class NbplaneHandler(APIHandler):
    """JSON in, JSON out; nbplane's errors become their 4xx with the field at fault."""

    @property
    def runs(self) -> LocalRuns:
        runs: LocalRuns = self.settings["nbplane_runs"]
        return runs

    @property
    def root(self) -> Path:
        return self.runs.root

    def body(self, model: type[Model]) -> Model:
        try:
            data = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.ConfigError(
                f"the request body is not valid JSON: {exc}", field="body"
            ) from None
        if not isinstance(data, dict):
            raise errors.InvalidInput("the request body must be a JSON object", field="body")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid(exc) from None

    def query(self, name: str) -> str:
        value = self.get_query_argument(name, None)
        if value is None:
            raise errors.InvalidInput(f"the query parameter {name} is required", field=name)
        return value

    def offset(self) -> int:
        text = self.get_query_argument("offset", None) or "0"
        if not text.isdigit():
            raise errors.InvalidInput(
                f"offset must be a whole number >= 0, got {text!r}", field="offset"
            )
        return int(text)

    async def call(self, work: Callable[[], T]) -> T:
        """Blocking work (the store, the nbplane server) off the event loop."""
        return await asyncio.to_thread(work)

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Jupyter's own errors (403, 404, 405) in nbplane's error shape."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.NbplaneError):
            self.set_status(status_of(exc))
            self.finish(json.dumps(exc.to_dict(), default=str))
            return
        reason = exc.log_message if isinstance(exc, tornado.web.HTTPError) else None
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {"error": "HTTPError", "message": reason or self._reason or "request failed"}
            )
        )

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """nbplane's errors are answers, not server faults: no traceback in the log."""
        if isinstance(value, errors.NbplaneError):
            self.log.info("nbplane: %s %s", status_of(value), value.message)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.NbplaneError):
            status_code = status_of(exc)
        super().send_error(status_code, **kwargs)


class StatusHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        url = self.get_query_argument("url", None)
        self.reply(await self.call(lambda: describe_login(url)))


class LoginHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body(LogIn)
        await self.call(lambda: log_in(body.url, body.token))
        self.reply(await self.call(describe_login))


class LogoutHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        await self.call(forget_login)
        self.reply(await self.call(describe_login))


class OAuthStartHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        url = self.query("url")
        redirect_uri = callback_url(self)
        logins: OAuthLogins = self.settings["nbplane_oauth"]
        authorize_url = await self.call(lambda: logins.start(url, redirect_uri))
        self.reply({"authorize_url": authorize_url, "redirect_uri": redirect_uri})


def callback_url(handler: JupyterHandler) -> str:
    """This server's OAuth callback as the browser reaches it (JupyterHub's prefix is in
    ``base_url``; the host and scheme are the request's, forwarded ones when Jupyter trusts
    X-Forwarded headers)."""
    path = url_path_join(handler.base_url, "nbplane", "oauth", "callback")
    return f"{handler.request.protocol}://{handler.request.host}{path}"


class OAuthCallbackHandler(JupyterHandler):
    """Where the provider sends the browser back: a small page, not JSON."""

    @tornado.web.authenticated
    async def get(self) -> None:
        logins: OAuthLogins = self.settings["nbplane_oauth"]
        redirect = {key: self.get_query_argument(key) for key in self.request.arguments}
        try:
            answer = await asyncio.to_thread(lambda: logins.finish(redirect))
        except errors.NbplaneError as exc:
            self.set_status(status_of(exc))
            self.page(f"nbplane login failed: {exc.message}")
            return
        self.page(
            f"Logged in to nbplane as {answer.user}. You can close this tab and go back to "
            "JupyterLab."
        )

    def page(self, text: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><meta charset=utf-8><title>nbplane login</title><p>{escape(text)}</p>"
        )


class JobsHandler(NbplaneHandler):
    """POST: a new local job folder. GET: the caller's jobs on the nbplane server."""

    @tornado.web.authenticated
    async def post(self) -> None:
        from nbplane.jobs.scaffold import create_job

        body = self.body(CreateJobDirectory)
        if body.team is not None:
            checked_name(body.team, "team", "team")
        parent = inside_root(self.root, body.directory)
        notebook = (
            inside_root(self.root, body.notebook, "notebook") if body.notebook is not None else None
        )

        def create() -> dict[str, Any]:
            job = load_job(create_job(body.name, team=body.team, parent=parent, notebook=notebook))
            return describe_job(self.root, job)

        self.reply(await self.call(create), 201)

    @tornado.web.authenticated
    async def get(self) -> None:
        def jobs() -> dict[str, Any]:
            with remote_client() as client:
                caller = client.me()
                found = [job for team in caller.teams for job in client.list_jobs(team)]
            return {
                "user": caller.user,
                "teams": caller.teams,
                "jobs": [job.model_dump(mode="json") for job in found],
            }

        self.reply(await self.call(jobs))


def describe_job(root: Path, job: Job) -> dict[str, Any]:
    return {
        "directory": str(job.directory.relative_to(root)),
        "name": job.name,
        "team": job.config.team,
        "steps": describe_steps(job),
    }


class JobHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.query("directory")
        directory = inside_root(self.root, path)

        def described() -> dict[str, Any]:
            job = describe_job(self.root, load_job(directory))
            return {**job, "failure": self.runs.last_failure(path)}

        self.reply(await self.call(described))


class JobNotebookHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        from nbplane.jobs.convert import convert_job

        body = self.body(ConvertJob)
        directory = inside_root(self.root, body.directory)
        to = inside_root(self.root, body.to, "to") if body.to is not None else None

        def convert() -> dict[str, Any]:
            converted = convert_job(directory, to)
            return {
                "notebook": str(converted.notebook.relative_to(self.root)),
                "directory": str(converted.notebook.parent.relative_to(self.root)),
                "steps": converted.steps,
                "copied": converted.copied,
            }

        self.reply(await self.call(convert), 201)


class HistoryHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        text = self.get_query_argument("limit", None) or str(HISTORY_SHOWN)
        if not text.isdigit() or not 1 <= int(text) <= HISTORY_MAX:
            raise errors.InvalidInput(
                f"limit must be a whole number from 1 to {HISTORY_MAX}, got {text!r}",
                field="limit",
            )
        records = await self.call(
            lambda: self.runs.store.list_runs_under(str(self.root), limit=int(text))
        )
        self.reply({"runs": [describe_record(self.root, record) for record in records]})


def describe_record(root: Path, record: DescribeRun) -> dict[str, Any]:
    """A run record as the jobs page lists it: where, how it ended and at which step."""
    failed = next((step for step in record.steps if step.status == StepStatus.FAILED), None)
    failing_step = None
    if failed is not None or record.error:
        error = (failed.error if failed else None) or record.error or {}
        failing_step = {
            "name": failed.name if failed else None,
            "file": failed.file if failed else None,
            "cell": failed.cell_number if failed else None,
            "message": error.get("message"),
            "summary": error.get("summary") or error.get("message"),
        }
    return {
        "id": record.id,
        "number": record.number,
        "directory": str(Path(record.job_dir).relative_to(root)),
        "job": record.job_name,
        "status": str(record.status),
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "duration": record.duration,
        "arguments": record.arguments,
        "resumed": record.resumed,
        "steps": len(record.steps),
        "failing_step": failing_step,
    }


class RunsHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body(StartRun)

        def start() -> dict[str, Any]:
            run = self.runs.start(
                body.directory,
                arguments=body.arguments,
                resume=body.resume,
                from_step=body.from_step,
            )
            return {"id": run.id}

        self.reply(await self.call(start), 201)

    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.get_query_argument("directory", None)

        def listed() -> dict[str, Any]:
            return {"runs": [self.runs.describe(run) for run in self.runs.find(path)]}

        self.reply(await self.call(listed))


class RunHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        self.reply(await self.call(lambda: self.runs.describe(self.runs.get(key))))

    @tornado.web.authenticated
    async def delete(self, key: str) -> None:
        self.reply(await self.call(lambda: self.runs.describe(self.runs.cancel(key))))


class RunLogHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        offset = self.offset()
        run = self.runs.get(key)
        text, following = await self.call(lambda: self.runs.read_log(run, offset))
        self.reply({"text": text, "offset": following})


class RunOutputsHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        run = self.runs.get(key)
        self.reply(await self.call(lambda: self.runs.outputs(run)))


PAGE_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)
"""An executed notebook's page holds the job's own outputs (HTML among them): shown, never run."""


class RunPageHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        run = self.runs.get(key)
        html = await self.call(lambda: self.runs.page(run))
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.finish(html, set_content_type="text/html; charset=utf-8")


class DeployHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body(DeployDirectory)
        directory = inside_root(self.root, body.directory)

        def deploy() -> dict[str, Any]:
            with remote_client() as client:
                deployed = deploy_directory(
                    client,
                    directory,
                    team=body.team,
                    name=body.name,
                    changes=body.changes(),
                )
                execution = (
                    client.execute(deployed.team, deployed.name, ExecuteJob())
                    if body.run_first
                    else None
                )
            return {
                "team": deployed.team,
                "name": deployed.name,
                "created": deployed.created,
                "version": deployed.version.model_dump(mode="json"),
                "deployment": deployed.deployment.model_dump(mode="json"),
                "execution": execution.model_dump(mode="json") if execution else None,
            }

        self.reply(await self.call(deploy), 201)


class RemoteJobHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, team: str, name: str) -> None:
        def details() -> dict[str, Any]:
            with remote_client() as client:
                job = client.get_job(team, name)
                page = client.list_executions(team, name, limit=EXECUTIONS_SHOWN)
                properties = client.get_properties(team, name)
            return {
                **job.model_dump(mode="json"),
                "executions": [item.model_dump(mode="json") for item in page.items],
                "executions_total": page.total,
                "properties": properties,
            }

        self.reply(await self.call(details))

    @tornado.web.authenticated
    async def delete(self, team: str, name: str) -> None:
        force = self.get_query_argument("force", None) in ("true", "1")

        def delete() -> None:
            with remote_client() as client:
                client.delete_job(team, name, force=force)

        await self.call(delete)
        self.set_status(204)
        self.finish()


class DeploymentHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def patch(self, team: str, name: str) -> None:
        body = self.body(PauseDeployment)

        def update() -> dict[str, Any]:
            with remote_client() as client:
                changes = UpdateDeployment(enabled=body.enabled)
                return client.update_deployment(team, name, changes).model_dump(mode="json")

        self.reply(await self.call(update))


class ExecutionsHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def post(self, team: str, name: str) -> None:
        body = self.body(ExecuteJob)

        def execute() -> dict[str, Any]:
            with remote_client() as client:
                return client.execute(team, name, body).model_dump(mode="json")

        self.reply(await self.call(execute), 201)


class ExecutionLogHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, team: str, name: str, execution: str) -> None:
        offset = self.offset()

        def read() -> dict[str, Any]:
            with remote_client() as client:
                text, following = client.read_logs(team, name, execution, offset)
            return {"text": text, "offset": following}

        self.reply(await self.call(read))


class DownloadHandler(NbplaneHandler):
    @tornado.web.authenticated
    async def get(self, team: str, name: str) -> None:
        version = self.get_query_argument("version", None)

        def download() -> bytes:
            with remote_client() as client:
                return client.download_version(
                    team, name, version or current_version(client, team, name)
                )

        archive = await self.call(download)
        self.set_header("Content-Disposition", f'attachment; filename="{name}.zip"')
        self.finish(archive, set_content_type="application/zip")


SEGMENT = r"([^/]+)"


def handlers(base_url: str) -> list[tuple[str, type[JupyterHandler]]]:
    """The routes, under ``{base_url}nbplane/``."""
    routes: list[tuple[str, type[JupyterHandler]]] = [
        ("status", StatusHandler),
        ("login", LoginHandler),
        ("logout", LogoutHandler),
        ("oauth/start", OAuthStartHandler),
        ("oauth/callback", OAuthCallbackHandler),
        ("jobs", JobsHandler),
        ("job", JobHandler),
        ("job/notebook", JobNotebookHandler),
        ("history", HistoryHandler),
        ("runs", RunsHandler),
        (f"runs/{SEGMENT}", RunHandler),
        (f"runs/{SEGMENT}/log", RunLogHandler),
        (f"runs/{SEGMENT}/outputs", RunOutputsHandler),
        (f"runs/{SEGMENT}/page", RunPageHandler),
        ("deploy", DeployHandler),
        (f"jobs/{SEGMENT}/{SEGMENT}", RemoteJobHandler),
        (f"jobs/{SEGMENT}/{SEGMENT}/deployment", DeploymentHandler),
        (f"jobs/{SEGMENT}/{SEGMENT}/executions", ExecutionsHandler),
        (f"jobs/{SEGMENT}/{SEGMENT}/executions/{SEGMENT}/logs", ExecutionLogHandler),
        (f"jobs/{SEGMENT}/{SEGMENT}/download", DownloadHandler),
    ]
    return [(url_path_join(base_url, "nbplane", path), handler) for path, handler in routes]
