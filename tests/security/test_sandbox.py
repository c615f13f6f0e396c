"""What the sandbox keeps from users' code on the server's machine.

A hostile job step (on the local executor) and a hostile kernel and terminal (in another user's
local session, on a real JupyterLab server handed out from the pool) try to read the server's key,
its database, its environment and another user's workspace, and to change nbplane's code and
files; each attempt fails, while each writes its own directory. Needs root and bwrap, which
`make test` installs; where they are missing `nbplane serve` must refuse, which is tested too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tornado.websocket import websocket_connect

import nbplane
from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus
from nbplane.deployments.executors.local import LocalExecutor
from nbplane.errors import ConfigError
from nbplane.platform.sandbox import Bubblewrap, bubblewrap_problem, sandbox_named
from nbplane.sessions.launchers.base import SessionSpec
from nbplane.sessions.launchers.local import LocalLauncher
from nbplane.settings import Settings
from tests.integration.server_fixture import running_server
from tests.integration.test_local_launcher import (
    launched,
    make_spec,
    run_in_kernel,
    wait_pooled,
    wait_ready,
)

SERVER_SECRET = f"server-only-{os.urandom(8).hex()}"
"""In the test process's environment, as NBPLANE_SECRET_KEY is in a server's."""

PROBE = r"""
import json, os, pathlib

def attempt(action):
    try:
        return "succeeded: " + repr(action())[:60]
    except Exception as exc:
        return "failed: " + type(exc).__name__

def read(path):
    return pathlib.Path(path).read_bytes()

def write(directory):
    pathlib.Path(directory, "hostile.txt").write_text("owned")
    return directory

def environments_with(secret):
    found = [str(path) for path in pathlib.Path("/proc").glob("[0-9]*/environ")
             if attempt(lambda: secret.encode() in read(path)) == "succeeded: True"]
    found += ["own environment"] if secret in "".join(os.environ.values()) else []
    if not found:
        raise LookupError(secret)
    return found

def probe(targets):
    results = {
        "read the key file": attempt(lambda: read(targets["key"])),
        "read the database file": attempt(lambda: read(targets["database"])),
        "read another user's workspace": attempt(lambda: read(targets["other"])),
        "list nbplane's home": attempt(lambda: os.listdir(targets["home"])),
        "find the server's secret in an environment": attempt(
            lambda: environments_with(targets["secret"])),
        "write the venv's site-packages": attempt(lambda: write(targets["site_packages"])),
        "write nbplane's code": attempt(lambda: write(targets["package"])),
        "write nbplane's home": attempt(lambda: write(targets["home"])),
    }
    own = attempt(lambda: write(os.getcwd()))
    return {"attempts": results, "own": own}
"""


@pytest.fixture
def bubblewrap() -> None:
    """Skip where bubblewrap cannot run; fail instead under `make test`, which installs it."""
    problem = bubblewrap_problem(Settings())
    if problem is None:
        return
    if os.environ.get("NBPLANE_TEST_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"bubblewrap is required but unusable: {problem}")
    pytest.skip(f"bubblewrap unusable here: {problem}")


@pytest.fixture
def elsewhere(bubblewrap: None, shared_dir: Path) -> Path:
    """A directory outside /tmp and the server user's home, which only the sandbox's own
    hiding (not its private /tmp) keeps out of sight."""
    return shared_dir


def server_files(home: Path, elsewhere: Path) -> tuple[Settings, dict[str, str]]:
    """nbplane's home with a key file and alice's workspace, a database file elsewhere, all
    readable by anyone as far as file modes go: only the sandbox keeps them out of reach."""
    home.mkdir(parents=True)
    key = home / "secret.key"
    key.write_text("the-master-key")
    alice = home / "sessions" / "alice" / "a1"
    alice.mkdir(parents=True)
    (alice / "private.txt").write_text("alice's notes")
    database = elsewhere / "nbplane.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE api_tokens (token_hash TEXT)")
    for path in (key, alice / "private.txt", database):
        path.chmod(0o644)
    for directory in (home, home / "sessions", home / "sessions" / "alice", alice):
        directory.chmod(0o755)
    settings = Settings(home=home, store_url=f"sqlite:///{database}", session_pool_size=1)
    targets = {
        "key": str(key),
        "database": str(database),
        "other": str(alice / "private.txt"),
        "home": str(home),
        "secret": SERVER_SECRET,
        "site_packages": sysconfig.get_paths()["purelib"],
        "package": str(Path(nbplane.__file__).parent),
    }
    return settings, targets


def assert_contained(report: dict[str, Any], targets: dict[str, str], own: Path) -> None:
    succeeded = {
        what: how for what, how in report["attempts"].items() if not how.startswith("failed")
    }
    assert succeeded == {}, succeeded
    assert report["own"].startswith("succeeded"), report["own"]
    assert (own / "hostile.txt").read_text() == "owned"
    for place in ("site_packages", "package", "home"):
        assert not (Path(targets[place]) / "hostile.txt").exists(), place


def ticket(execution_id: str, command: list[str]) -> ExecutionTicket:
    return ExecutionTicket(
        execution_id=execution_id,
        team="b",
        job="hostile",
        version="1",
        resources={},
        timeout=60.0,
        command=command,
        environment={"NBPLANE_EXECUTION_TOKEN": "its-own-credential"},
    )


async def wait_ended(executor: LocalExecutor, state: dict[str, Any]) -> ExecutorStatus:
    deadline = time.monotonic() + 60
    while (status := await executor.poll(state)).running:
        assert time.monotonic() < deadline, await executor.logs(state)
        await asyncio.sleep(0.05)
    return status


def test_a_hostile_job_step_reaches_nothing_of_the_server_but_writes_its_work_dir(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBPLANE_SECRET_KEY", SERVER_SECRET)
    settings, targets = server_files(tmp_path / "home", elsewhere)
    code = PROBE + (
        "import sys\n"
        "print(json.dumps({**probe(json.loads(sys.argv[1])),"
        " 'token': os.environ.get('NBPLANE_EXECUTION_TOKEN'), 'uid': os.getuid()}))\n"
    )

    async def main() -> None:
        executor = LocalExecutor(settings)
        assert executor.sandbox.name == "bubblewrap"
        state = await executor.start(
            ticket("e1", [sys.executable, "-c", code, json.dumps(targets)])
        )
        await wait_ended(executor, state)
        log = await executor.logs(state) or ""
        report = json.loads(log.strip().splitlines()[-1])
        assert_contained(report, targets, Path(state["directory"]) / "work")
        assert report["token"] == "its-own-credential", "the ticket's variables do reach it"
        assert report["uid"] == settings.sandbox_uid

    asyncio.run(main())


def test_stop_ends_a_sandboxed_job_and_its_children(tmp_path: Path, bubblewrap: None) -> None:
    command = ["/bin/sh", "-c", "sleep 300 & sleep 300 & wait"]

    async def main() -> None:
        executor = LocalExecutor(Settings(home=tmp_path / "home"))
        killed = await executor.start(ticket("e3", ["/bin/sh", "-c", "kill -TERM $$"]))
        status = await wait_ended(executor, killed)
        assert status.reason == f"killed by {signal.SIGTERM.name}", "as without a sandbox"

        state = await executor.start(ticket("e2", command))
        deadline = time.monotonic() + 30
        while len(family := _family(state["pid"])) < 5:  # bwrap, its init, sh, two sleeps
            assert time.monotonic() < deadline, family
            await asyncio.sleep(0.05)
        await executor.stop(state)
        _, alive = psutil.wait_procs(family, timeout=30)  # a SIGKILL lands a moment later
        assert not [process for process in alive if not _gone(process)], alive
        assert not (await executor.poll(state)).running

    asyncio.run(main())


async def in_terminal(url: str, spec: SessionSpec, command: str) -> str:
    """Open a terminal of the session's server, type ``command``, return what it printed until
    the line ``done`` (the terminal's own websocket protocol, as JupyterLab speaks it)."""
    created = httpx.post(f"{url}api/terminals", headers={"Authorization": f"token {spec.token}"})
    assert created.status_code == 200, created.text
    socket_url = url.replace("http://", "ws://")
    connection = await websocket_connect(
        f"{socket_url}terminals/websocket/{created.json()['name']}?token={spec.token}"
    )
    try:
        await connection.write_message(json.dumps(["stdin", f"{command}; echo do''ne\r"]))
        printed = ""
        while "\ndone" not in printed.replace("\r", ""):
            message = await asyncio.wait_for(connection.read_message(), 60)
            assert message is not None, printed
            kind, *content = json.loads(message)
            printed += content[0] if kind == "stdout" else ""
        return printed
    finally:
        connection.close()


def test_a_hostile_kernel_in_bobs_session_reaches_nothing_of_alice_or_the_server(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBPLANE_SECRET_KEY", SERVER_SECRET)
    settings, targets = server_files(tmp_path / "home", elsewhere)
    code = PROBE + f"print(json.dumps(probe({targets!r})))\n"

    async def main() -> None:
        async with launched(LocalLauncher(settings)) as launcher:
            assert launcher.sandbox.name == "bubblewrap"
            await wait_pooled(launcher)
            spec = make_spec(launcher.new_id(), user="bob")
            state = await launcher.start(spec)
            assert state["pooled"] is True, "the pooled server's handout is the one to prove"
            status = await wait_ready(launcher, spec, state)
            assert status.url is not None
            printed = run_in_kernel(status.url, spec, state, code)
            assert_contained(json.loads(printed), targets, Path(state["workspace"]))

            typed = await in_terminal(
                status.url, spec, f"id -u; cat {targets['key']} {targets['other']}"
            )
            assert f"{settings.sandbox_uid}\r\n" in typed, typed
            assert "the-master-key" not in typed and "alice's notes" not in typed, typed
            assert "No such file or directory" in typed, typed
            await launcher.stop(spec, state, purge=True)

    asyncio.run(main())


def test_the_launcher_reads_no_file_a_session_plants_in_its_runtime_directory(
    tmp_path: Path,
) -> None:
    """The runtime directory is the sandbox's: where the server looks for the port its Jupyter
    server bound, a pipe must not hang it and a symlink must not make it read its key."""
    key = tmp_path / "secret.key"
    key.write_text('{"port": 4242}')
    server_dir = tmp_path / "home" / "session-servers" / "s1"
    runtime = server_dir / "runtime"
    runtime.mkdir(parents=True)
    os.mkfifo(runtime / "jpserver-2.json")
    (runtime / "jpserver-3.json").symlink_to(key)
    state = {
        "host": os.uname().nodename,
        "workspace": str(tmp_path / "home" / "sessions" / "alice" / "s1"),
        "pid": os.getpid(),  # alive: the launcher looks for its port
        "started": psutil.Process().create_time(),
        "server_dir": str(server_dir),
        "log": str(server_dir / "server.log"),
    }

    async def main() -> None:
        launcher = LocalLauncher(Settings(home=tmp_path / "home", session_pool_size=0))
        try:
            status = await asyncio.wait_for(launcher.poll(make_spec(), state), 10)
        finally:
            await launcher.close()
        assert status.url is None and status.steps[-1].name == "ready"

    asyncio.run(main())


def test_serve_refuses_local_jobs_and_sessions_without_a_sandbox_unless_single_tenant(
    tmp_path: Path,
) -> None:
    environment = {
        **os.environ,
        "NBPLANE_HOME": str(tmp_path),
        "NBPLANE_SANDBOX": "none",
        "COLUMNS": "400",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "nbplane", "serve", "--port", "0"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "NBPLANE_SANDBOX is none" in line and "--single-tenant" in line

    (tmp_path / "apis").mkdir(exist_ok=True)
    store = f"sqlite:///{tmp_path / 'nbplane.db'}"
    with running_server(
        tmp_path / "apis",
        tmp_path,
        store,
        "--single-tenant",
        environment={"NBPLANE_SANDBOX": "none"},
    ) as server:
        assert server.client.get("/health").status_code == 200


def test_sandbox_names_are_checked(bubblewrap: None) -> None:
    with pytest.raises(ConfigError) as unknown:
        sandbox_named(Settings(sandbox="chroot"))
    assert unknown.value.fields["field"] == "NBPLANE_SANDBOX"
    assert isinstance(sandbox_named(Settings(sandbox="auto")), Bubblewrap)


def test_a_sandbox_is_never_given_nbplanes_home_or_database(
    tmp_path: Path, elsewhere: Path
) -> None:
    settings, _ = server_files(tmp_path / "home", elsewhere)
    sandbox = Bubblewrap(settings)
    for given in (tmp_path, elsewhere):
        with pytest.raises(ConfigError) as refused:
            sandbox.command(["true"], cwd=given, writable=[given], readable=[])
        assert str(given) not in refused.value.message
    allowed = tmp_path / "home" / "executions" / "e1"
    allowed.mkdir(parents=True)
    assert sandbox.command(["true"], cwd=allowed, writable=[allowed], readable=[])


def _family(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_with_home_elsewhere_the_accounts_home_is_hidden_and_python_still_runs(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started with HOME=/somewhere/else (as the README test does) still hides the
    account's own home, and binds back the Python it holds (e.g. pyenv under /root)."""
    import pwd

    account = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere-home"))
    (tmp_path / "elsewhere-home").mkdir()
    settings, _ = server_files(tmp_path / "home", elsewhere)
    work = elsewhere / "work"
    work.mkdir()
    work.chmod(0o777)
    script = "import json, os, sys; print(json.dumps(os.listdir(sys.argv[1])))"
    argv = [sys.executable, "-c", script, str(account)]
    command = Bubblewrap(settings).command(argv, cwd=work, writable=[work], readable=[])
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr  # its Python ran
    python = Path(sys.executable).resolve()
    shown_back = {python.relative_to(account).parts[0]} if python.is_relative_to(account) else set()
    assert set(json.loads(done.stdout)) <= shown_back, "the account's home is shown empty"
