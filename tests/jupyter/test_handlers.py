"""nbplane's Jupyter server extension in a real Jupyter server (pytest-jupyter): local job
runs in real subprocesses, login and deployments against a real ``nbplane serve`` on loopback,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import nbformat
import pytest
from tornado.httpclient import HTTPResponse

from tests.conftest import BACKENDS, Env, database_url
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.oauth_provider import Provider, User, running_provider

Fetch = Callable[..., Awaitable[HTTPResponse]]
POLL_SECONDS = 0.1
WAIT_SECONDS = 120.0
"""Only a bound so a broken run fails the test instead of hanging it; never asserted on."""
WAIT_FOR_GO = (
    "import pathlib, time\n"
    "while not pathlib.Path('go').exists():\n"
    "    time.sleep(0.05)\n"
    "print('went on')"
)


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbplane.jupyter": True}}}


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No login from the machine's environment; settings read again after each test."""
    from nbplane.settings import get_settings

    monkeypatch.delenv("NBPLANE_URL", raising=False)
    monkeypatch.delenv("NBPLANE_TOKEN", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nbplane's home of the Jupyter server's user, its store the default SQLite in it (the
    tests of a remote server; the local runs use ``env``, on SQLite and PostgreSQL)."""
    from nbplane.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("NBPLANE_HOME", str(home))
    for name in ("NBPLANE_STORE_URL", "NBPLANE_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    return home


@pytest.fixture
def api(jp_fetch: Fetch) -> Api:
    """Ask for ``env`` or ``home`` before it, so the server starts with that environment."""
    return Api(jp_fetch)


class Api:
    """The extension's routes as the front end calls them."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200, **params: str
    ) -> Any:
        kwargs: dict[str, Any] = {"method": method, "raise_error": False, "params": params}
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method == "POST":
            kwargs["body"] = ""
        response = await self.fetch("nbplane", *path.split("/"), **kwargs)
        if response.headers.get("Content-Type", "").startswith("application/zip"):
            assert response.code == expect, f"{method} {path}: {response.code}"
            return response.body
        text = response.body.decode() if response.body else ""
        assert response.code == expect, f"{method} {path}: {response.code} {text}"
        return json.loads(text) if text else None

    async def error(
        self,
        method: str,
        path: str,
        body: Any = None,
        expect: int = 422,
        field: str | None = None,
        **params: str,
    ) -> dict[str, Any]:
        """A refused request: the error shape, the status, the field named."""
        answer = await self.call(method, path, body, expect, **params)
        assert isinstance(answer, dict) and answer["message"], answer
        assert answer["error"], answer
        if field is not None:
            assert answer.get("field") == field, answer
        return answer

    async def run(self, directory: str, **body: Any) -> str:
        started = await self.call("POST", "runs", {"directory": directory, **body}, 201)
        return str(started["id"])

    async def until(self, run: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            described = await self.call("GET", f"runs/{run}")
            if done(described):
                return described
            assert asyncio.get_running_loop().time() < deadline, described
            await asyncio.sleep(POLL_SECONDS)

    async def final(self, run: str) -> dict[str, Any]:
        return await self.until(run, lambda d: d["status"] in ("succeeded", "failed", "cancelled"))

    async def log(self, run: str) -> str:
        text, offset = "", 0
        while True:
            chunk = await self.call("GET", f"runs/{run}/log", offset=str(offset))
            if not chunk["text"]:
                return text
            text, offset = text + chunk["text"], chunk["offset"]


def write_job(root: Path, name: str, cells: list[str | tuple[str, list[str]]]) -> Path:
    """A job folder of one notebook; a cell is a step source, or (source, tags)."""
    directory = root / name
    directory.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook()
    for cell in cells:
        source, tags = (cell, ["step"]) if isinstance(cell, str) else cell
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(notebook, directory / "10_main.ipynb")
    return directory


def test_installing_nbplane_enables_the_extension() -> None:
    """``pip install`` puts jupyter-config/ into etc/jupyter: no `jupyter server extension
    enable` needed."""
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines = (listed.stdout + listed.stderr).splitlines()
    assert any("nbplane.jupyter" in line and "enabled" in line for line in lines), lines
    assert any("nbplane.jupyter" in line and "OK" in line for line in lines), lines


# -- refused requests


ROUTES = [
    ("GET", "status"),
    ("POST", "login"),
    ("POST", "logout"),
    ("GET", "oauth/start"),
    ("GET", "oauth/callback"),
    ("GET", "jobs"),
    ("POST", "jobs"),
    ("GET", "job"),
    ("POST", "job/notebook"),
    ("GET", "history"),
    ("POST", "runs"),
    ("GET", "runs"),
    ("GET", "runs/x"),
    ("DELETE", "runs/x"),
    ("GET", "runs/x/log"),
    ("GET", "runs/x/outputs"),
    ("GET", "runs/x/page"),
    ("POST", "deploy"),
    ("GET", "jobs/t/n"),
    ("DELETE", "jobs/t/n"),
    ("PATCH", "jobs/t/n/deployment"),
    ("POST", "jobs/t/n/executions"),
    ("GET", "jobs/t/n/executions/e/logs"),
    ("GET", "jobs/t/n/download"),
]


async def test_unauthenticated_requests_are_refused(home: Path, jp_fetch: Fetch) -> None:
    for method, path in ROUTES:
        response = await jp_fetch(
            "nbplane",
            *path.split("/"),
            method=method,
            raise_error=False,
            headers={"Authorization": ""},
            body="{}" if method in ("POST", "PATCH") else None,
            follow_redirects=False,
        )
        # API routes answer 403; the OAuth callback, a page, sends the browser to log in
        expected = 302 if path == "oauth/callback" else 403
        assert response.code == expected, (method, path, response.code)


async def test_bad_input_names_the_field(env: Env, api: Api, jp_root_dir: Path) -> None:
    write_job(jp_root_dir, "good", ["x = 1"])
    await api.error("POST", "runs", {}, field="directory")
    await api.error("POST", "runs", {"directory": 5}, field="directory")
    await api.error("POST", "runs", {"directory": "../elsewhere"}, field="directory")
    await api.error("POST", "runs", {"directory": "/etc"}, field="directory")
    await api.error("POST", "runs", {"directory": "good", "arguments": "x"}, field="arguments")
    await api.error("POST", "runs", {"directory": "good", "resume": "true"}, field="resume")
    await api.error("POST", "runs", {"directory": "good", "extra": 1}, field="extra")
    await api.error(
        "POST", "runs", {"directory": "good", "from_step": "nope"}, 400, field="from_step"
    )
    await api.error("POST", "runs", {"directory": "missing"}, 400)
    await api.error("POST", "runs", "{not json", 400, field="body")
    await api.error("POST", "runs", "[1]", 422, field="body")
    await api.error("GET", "runs/nope", expect=404, field="id")
    await api.error("DELETE", "runs/nope", expect=404, field="id")
    await api.error("GET", "runs/nope/log", expect=404, field="id")
    await api.error("GET", "runs/nope/outputs", expect=404, field="id")
    await api.error("GET", "runs/nope/page", expect=404, field="id")
    await api.error("GET", "job", field="directory")
    await api.error("GET", "job", expect=422, field="directory", directory="../..")
    await api.error("GET", "runs", expect=422, field="directory", directory="../x")
    await api.error("POST", "jobs", {"name": "a", "directory": "../.."}, field="directory")
    await api.error("POST", "jobs", {"name": "bad name!"}, 400, field="name")
    await api.error("POST", "jobs", {"name": "ok", "team": "Bad Team"}, 400, field="team")
    await api.error("POST", "jobs", {"team": "t"}, field="name")
    await api.error("POST", "login", {"url": "nope", "token": "x"}, 400, field="url")
    await api.error("POST", "login", {"url": "http://127.0.0.1:1"}, field="token")
    await api.error("GET", "oauth/start", field="url")
    for method, path in [
        ("GET", "jobs"),
        ("GET", "jobs/t/n"),
        ("DELETE", "jobs/t/n"),
        ("POST", "jobs/t/n/executions"),
        ("GET", "jobs/t/n/download"),
        ("GET", "jobs/t/n/executions/e/logs"),
    ]:
        answer = await api.error(method, path, expect=401, field="login")
        assert "log in" in answer["message"]
    await api.error("PATCH", "jobs/t/n/deployment", {"enabled": False}, 401, field="login")
    await api.error("PATCH", "jobs/t/n/deployment", {"enabled": "no"}, field="enabled")
    await api.error("POST", "job/notebook", {}, field="directory")
    await api.error("POST", "job/notebook", {"directory": "../x"}, field="directory")
    await api.error("POST", "job/notebook", {"directory": "good", "to": "../x.ipynb"}, field="to")
    await api.error(
        "POST", "job/notebook", {"directory": "good", "to": "good/x.ipynb"}, 400, field="to"
    )
    await api.error("POST", "jobs", {"name": "n", "notebook": "../x.ipynb"}, field="notebook")
    await api.error("POST", "jobs", {"name": "n", "notebook": "good"}, 400, field="notebook")
    for limit in ("0", "x", "501"):
        await api.error("GET", "history", expect=422, field="limit", limit=limit)
    await api.error("POST", "deploy", {"directory": "good"}, 401, field="login")
    await api.error("POST", "deploy", {"directory": "../x"}, 422, field="directory")
    run = await api.run("good")
    await api.error("GET", f"runs/{run}/log", expect=422, field="offset", offset="-1")
    await api.final(run)


# -- local jobs


async def test_create_job_lists_its_steps_in_run_order(
    home: Path, api: Api, jp_root_dir: Path
) -> None:
    created = await api.call(
        "POST", "jobs", {"name": "sales", "team": "analytics", "directory": "work"}, 201
    )
    assert created["directory"] == "work/sales" and created["team"] == "analytics"
    assert (jp_root_dir / "work" / "sales" / "10_hello.ipynb").is_file()
    described = await api.call("GET", "job", directory="work/sales")
    assert described["steps"] == created["steps"]
    steps = described["steps"]
    assert [step["order"] for step in steps] == [1, 2, 3]
    assert [step["cell_index"] for step in steps] == [1, 2, 3], "the markdown cell is cell 0"
    assert [step["sql"] for step in steps] == [True, False, True]
    assert {step["kind"] for step in steps} == {"notebook"}
    assert all(step["cell_id"] and step["file"] == "10_hello.ipynb" for step in steps)
    await api.error("POST", "jobs", {"name": "sales", "directory": "work"}, 400, field="name")


async def test_history_lists_runs_under_the_root_with_their_failing_step(
    env: Env, api: Api, jp_root_dir: Path, tmp_path: Path
) -> None:
    write_job(jp_root_dir / "team", "fine", ["print('ok')"])
    write_job(jp_root_dir, "broken", ["x = 1", "raise ValueError('no data')"])
    write_job(tmp_path / "elsewhere", "outside", ["print('not shown')"])
    env.run("job", "run", str(tmp_path / "elsewhere" / "outside"))
    for directory in ("team/fine", "broken"):
        await api.final(await api.run(directory))
    runs = (await api.call("GET", "history"))["runs"]
    assert [(run["directory"], run["status"]) for run in runs] == [
        ("broken", "failed"),
        ("team/fine", "succeeded"),
    ], "newest first, only jobs under the Jupyter root"
    failed, fine = runs
    assert failed["failing_step"]["name"] == "10_main.ipynb#2"
    assert failed["failing_step"]["cell"] == 2 and "no data" in failed["failing_step"]["message"]
    assert failed["failing_step"]["summary"] == "ValueError: no data"
    assert fine["failing_step"] is None and fine["number"] == 1 and fine["steps"] == 1
    assert fine["duration"] >= 0 and fine["job"] == "fine"
    assert len((await api.call("GET", "history", limit="1"))["runs"]) == 1


async def test_convert_a_job_and_create_one_from_a_notebook(
    home: Path, api: Api, jp_root_dir: Path
) -> None:
    job = jp_root_dir / "vdk"
    job.mkdir()
    (job / "10_a.sql").write_text("SELECT 1", encoding="utf-8")
    (job / "20_b.py").write_text("def run(job_input):\n    pass\n", encoding="utf-8")
    converted = await api.call("POST", "job/notebook", {"directory": "vdk"}, 201)
    assert converted == {
        "notebook": "vdk-notebook/vdk.ipynb",
        "directory": "vdk-notebook",
        "steps": ["10_a.sql", "20_b.py"],
        "copied": [],
    }
    described = await api.call("GET", "job", directory="vdk-notebook")
    assert [step["sql"] for step in described["steps"]] == [True, False]
    (job / "30_c.py").write_text("def run():\n    pass\n", encoding="utf-8")
    refused = await api.error("POST", "job/notebook", {"directory": "vdk", "to": "o/x.ipynb"}, 400)
    assert refused["file"] == "30_c.py" and "30_c.py" in refused["message"]

    created = await api.call(
        "POST",
        "jobs",
        {"name": "from-nb", "directory": "vdk-notebook", "notebook": "vdk-notebook/vdk.ipynb"},
        201,
    )
    assert created["directory"] == "vdk-notebook/from-nb"
    assert [step["file"] for step in created["steps"]] == ["vdk.ipynb", "vdk.ipynb"]


async def test_run_shows_step_progress_then_a_failing_cell_then_resumes(
    env: Env, api: Api, jp_root_dir: Path
) -> None:
    job = write_job(
        jp_root_dir,
        "progress",
        [
            "print('first step')",
            ("not a step", []),
            WAIT_FOR_GO,
            "total = 6 * 7\nprint(total)",
        ],
    )
    run = await api.run("progress", arguments={"day": "2024-01-01"})
    middle = await api.until(run, lambda d: d["steps"][1]["status"] == "running")
    assert middle["status"] == "running"
    assert middle["steps"][0]["status"] == "succeeded" and middle["steps"][0]["finished_at"]
    assert middle["steps"][2]["status"] == "pending"
    assert [step["cell_index"] for step in middle["steps"]] == [0, 2, 3]
    (job / "go").touch()
    done = await api.final(run)
    assert done["status"] == "succeeded", done
    assert [step["status"] for step in done["steps"]] == ["succeeded"] * 3
    assert done["error"] is None and done["run_id"] and done["finished_at"]
    log = await api.log(run)
    assert "first step" in log and "went on" in log and "42" in log
    assert done["log_size"] == len(log.encode())
    # A log, not a terminal: no box drawing, no colours, no hint holding the server's paths.
    assert not set(log) & set("─│┃━┏┗╇┡└┘\x1b"), log
    assert str(jp_root_dir) not in log and "show-run" not in log, log
    # What each step cell showed, to put into the open notebook; its executed copy as a page.
    shown = await api.call("GET", f"runs/{run}/outputs")
    assert shown["run_number"] == done["run_number"]
    assert [(s["order"], s["cell_index"]) for s in shown["steps"]] == [(1, 0), (2, 2), (3, 3)]
    assert shown["steps"][2]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "42\n"}
    ]
    page = await api.fetch("nbplane", "runs", run, "page")
    assert page.headers["Content-Type"].startswith("text/html")
    assert "sandbox" in page.headers["Content-Security-Policy"]
    assert "went on" in page.body.decode() and "succeeded" in page.body.decode()
    assert (await api.call("GET", "job", directory="progress"))["failure"] is None

    notebook = nbformat.read(job / "10_main.ipynb", as_version=4)
    notebook.cells[3].source = "total = 6 * 7\nraise ValueError(f'bad total {total}')"
    nbformat.write(notebook, job / "10_main.ipynb")
    failed = await api.final(await api.run("progress"))
    assert failed["status"] == "failed"
    assert [step["status"] for step in failed["steps"]] == ["succeeded", "succeeded", "failed"]
    error = failed["error"]
    assert error["file"] == "10_main.ipynb" and error["cell_index"] == 3
    assert error["cell_id"] == notebook.cells[3].id and error["line"] == 2
    assert "ValueError: bad total 42" in error["message"] and "ValueError" in error["traceback"]
    # Kept in the run records: the failing cell is marked again after a page reload.
    remembered = (await api.call("GET", "job", directory="progress"))["failure"]
    assert remembered == {**error, "run_number": failed["run_number"]}

    notebook.cells[3].source = "total = 6 * 7\nprint('fixed', total)"
    nbformat.write(notebook, job / "10_main.ipynb")
    resumed = await api.final(await api.run("progress", resume=True))
    assert resumed["status"] == "succeeded", resumed
    assert [step["status"] for step in resumed["steps"]] == ["skipped", "skipped", "succeeded"]
    assert "fixed 42" in await api.log(resumed["id"])
    assert (await api.call("GET", "job", directory="progress"))["failure"] is None, "passed now"

    listed = await api.call("GET", "runs", directory="progress")
    assert [item["id"] for item in listed["runs"]] == [resumed["id"], failed["id"], run]


async def test_cancel_stops_the_run(env: Env, api: Api, jp_root_dir: Path) -> None:
    write_job(jp_root_dir, "slow", ["print('started')", WAIT_FOR_GO, "print('never')"])
    run = await api.run("slow")
    await api.until(run, lambda d: d["steps"][1]["status"] == "running")
    await api.error("POST", "runs", {"directory": "slow"}, 409, field="directory")
    cancelled = await api.call("DELETE", f"runs/{run}")
    assert cancelled["status"] == "cancelled"
    assert [step["status"] for step in cancelled["steps"]] == ["succeeded", "not run", "not run"]
    again = await api.call("GET", f"runs/{run}")
    assert again["status"] == "cancelled" and "never" not in await api.log(run)
    shown = env.run(
        "job", "show-run", str(jp_root_dir / "slow"), str(again["run_number"]), "--output", "json"
    )
    assert json.loads(shown.stdout)["status"] == "cancelled", "the record says so too"
    assert (await api.call("DELETE", f"runs/{run}"))["status"] == "cancelled", "idempotent"


async def test_a_run_that_cannot_start_says_why(home: Path, api: Api, jp_root_dir: Path) -> None:
    directory = jp_root_dir / "broken"
    directory.mkdir()
    (directory / "10_a.ipynb").write_text("{not a notebook")
    answer = await api.error("POST", "runs", {"directory": "broken"}, 400)
    assert "10_a.ipynb" in answer["message"]
    (directory / "10_a.ipynb").unlink()
    answer = await api.error("GET", "job", expect=400, directory="broken")
    assert "no steps" in answer["message"]


# -- login and the nbplane server


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """A real OAuth2 provider on loopback that logs everyone in as carol of team analytics."""
    with running_provider() as running:
        running.user = User("carol", ["analytics"])
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def nbplane_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[Server]:
    """A real ``nbplane serve`` logging in at ``provider``, with user alice in team analytics
    (their token in ``server.environment["ALICE_TOKEN"]``)."""
    root = tmp_path_factory.mktemp("nbplane-server")
    (root / "notebooks").mkdir()
    with database_url(request.param, root) as url:
        store = url if url.startswith("postgresql") else f"sqlite:///{root / 'nbplane.db'}"
        with running_server(
            root / "notebooks",
            root / "home",
            store,
            environment={"NBPLANE_DB_URL": url, **provider.settings},
        ) as server:
            nbplane("user", "create", "alice", "--team=analytics", environment=server.environment)
            server.environment["ALICE_TOKEN"] = nbplane(
                "token",
                "create",
                "alice-jupyter",
                "--user",
                "alice",
                environment=server.environment,
            ).stdout.strip()
            yield server


async def test_login_logout_with_a_real_token(nbplane_server: Server, home: Path, api: Api) -> None:
    token = nbplane_server.environment["ALICE_TOKEN"]
    before = await api.call("GET", "status", url=nbplane_server.url)
    assert before["logged_in"] is False and before["in_session"] is False
    assert before["oauth_available"] is True
    refused = await api.error("POST", "login", {"url": nbplane_server.url, "token": "wrong"}, 401)
    assert "token" in refused["message"].lower()
    status = await api.call("POST", "login", {"url": nbplane_server.url, "token": token})
    assert status["logged_in"] and status["user"] == "alice" and status["teams"] == ["analytics"]
    assert token not in json.dumps(status), "the token never goes back to the browser"
    saved = json.loads((home / "credentials.json").read_text())
    assert saved == {"url": nbplane_server.url, "token": token}
    assert (await api.call("GET", "status"))["server_url"] == nbplane_server.url
    out = await api.call("POST", "logout")
    assert out["logged_in"] is False and not (home / "credentials.json").exists()
    await api.error("GET", "jobs", expect=401, field="login")


async def test_in_session_login_comes_from_the_environment(
    nbplane_server: Server, home: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbplane.settings import get_settings

    monkeypatch.setenv("NBPLANE_URL", nbplane_server.url)
    monkeypatch.setenv("NBPLANE_TOKEN", nbplane_server.environment["ALICE_TOKEN"])
    get_settings.cache_clear()
    status = await api.call("GET", "status")
    assert status["in_session"] and status["logged_in"] and status["user"] == "alice"
    assert (await api.call("GET", "jobs"))["user"] == "alice"


async def test_deploy_execute_and_follow_a_job(
    nbplane_server: Server, home: Path, api: Api, jp_root_dir: Path
) -> None:
    await api.call(
        "POST",
        "login",
        {"url": nbplane_server.url, "token": nbplane_server.environment["ALICE_TOKEN"]},
    )
    name = f"daily-{nbplane_server.url.rsplit(':', 1)[1]}"
    write_job(jp_root_dir, name, ["print('hello from the server')"])
    answer = await api.error(
        "POST", "deploy", {"directory": name, "schedule": "not cron"}, 422, field="schedule"
    )
    assert "cron" in answer["message"]
    await api.error("POST", "deploy", {"directory": name, "retries": 11}, 422, field="retries")
    await api.error("POST", "deploy", {"directory": name, "retry_on": "x"}, 422, field="retry_on")
    deployed = await api.call(
        "POST",
        "deploy",
        {
            "directory": name,
            "schedule": "0 6 * * *",
            "enabled": False,
            "retries": 2,
            "retry_delay": 30,
            "retry_on": "platform",
            "reason": "first",
            "run_first": True,
            "timezone": "Europe/Paris",
            "arguments": {"day": "monday"},
        },
        201,
    )
    assert deployed["deployment"]["timezone"] == "Europe/Paris"
    assert deployed["deployment"]["arguments"] == {"day": "monday"}
    assert deployed["team"] == "analytics" and deployed["name"] == name
    assert deployed["deployment"]["schedule"] == "0 6 * * *"
    retry_policy = [deployed["deployment"][key] for key in ("retries", "retry_delay", "retry_on")]
    assert retry_policy == [2, 30, "platform"]
    assert deployed["deployment"]["enabled"] is False and deployed["execution"]["id"]
    execution = deployed["execution"]["id"]

    path = f"jobs/analytics/{name}"
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        details = await api.call("GET", path)
        first = next(item for item in details["executions"] if item["id"] == execution)
        if first["status"] not in ("queued", "running"):
            break
        assert asyncio.get_running_loop().time() < deadline, first
        await asyncio.sleep(POLL_SECONDS)
    assert first["status"] == "completed", first
    assert details["deployment"]["reason"] == "first" and details["properties"] == {}
    log = await api.call("GET", f"{path}/executions/{execution}/logs", offset="0")
    assert "hello from the server" in log["text"] and log["offset"] >= len(log["text"])

    listed = await api.call("GET", "jobs")
    mine = next(job for job in listed["jobs"] if job["name"] == name)
    assert mine["deployment"]["version"] == deployed["version"]["id"]
    assert mine["last_executions"][0]["status"] == "completed"

    again = await api.call("POST", f"{path}/executions", {"arguments": {"day": "x"}}, 201)
    assert again["arguments"] == {"day": "x"}
    archive = await api.call("GET", f"{path}/download")
    assert "10_main.ipynb" in zipfile.ZipFile(io.BytesIO(archive)).namelist()
    await api.error("GET", "jobs/analytics/no-such-job", expect=404)
    await api.error("GET", "jobs/ops/anything", expect=404, field="job")

    resumed = await api.call("PATCH", f"{path}/deployment", {"enabled": True})
    assert resumed["enabled"] is True and resumed["timezone"] == "Europe/Paris"
    paused = await api.call("PATCH", f"{path}/deployment", {"enabled": False})
    assert paused["enabled"] is False

    await api.call("DELETE", path, expect=204, force="true")
    await api.error("GET", path, expect=404)


async def test_oauth_login_comes_back_to_this_jupyter_server(
    nbplane_server: Server, home: Path, api: Api, jp_fetch: Fetch, jp_base_url: str
) -> None:
    started = await api.call("GET", "oauth/start", url=nbplane_server.url)
    redirect_uri = started["redirect_uri"]
    assert urlsplit(redirect_uri).path == f"{jp_base_url}nbplane/oauth/callback"
    query = dict(parse_qsl(urlsplit(started["authorize_url"]).query))
    assert query["redirect_uri"] == redirect_uri and query["code_challenge_method"] == "S256"
    approved = await asyncio.to_thread(httpx.get, started["authorize_url"])  # the provider's page
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    assert back.path == urlsplit(redirect_uri).path
    page = await jp_fetch(
        "nbplane", "oauth", "callback", params=dict(parse_qsl(back.query)), raise_error=False
    )
    assert page.code == 200 and b"as carol" in page.body and b"close this tab" in page.body
    status = await api.call("GET", "status")
    assert status["logged_in"] and status["user"] == "carol" and status["teams"] == ["analytics"]
    saved = json.loads((home / "credentials.json").read_text())
    assert saved["url"] == nbplane_server.url and saved["token"] not in page.body.decode()

    replayed = await jp_fetch(
        "nbplane", "oauth", "callback", params=dict(parse_qsl(back.query)), raise_error=False
    )
    assert replayed.code == 401 and b"log in again" in replayed.body, "a login is used once"
    refused = await jp_fetch(
        "nbplane", "oauth", "callback", params={"error": "access_denied"}, raise_error=False
    )
    assert refused.code == 401
    await api.error("GET", "oauth/start", expect=400, field="url", url="not a url")
