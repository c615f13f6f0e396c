"""The local session launcher against real JupyterLab servers and kernels on loopback.

No database is involved: the launcher only turns a session spec into a running server and
back; the sessions API tests cover the records.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from nbplane.errors import InvalidInput
from nbplane.sessions.launchers.base import LaunchPhase, LaunchStatus, SessionSpec, StepStatus
from nbplane.sessions.launchers.local import LocalLauncher
from nbplane.settings import Settings

START_TIMEOUT = 90.0
SECRET = "s3cr3t-value-42"


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def settings(tmp_path: Path, pool: int = 0, **fields: Any) -> Settings:
    return Settings(home=tmp_path / "home", session_pool_size=pool, **fields)


def make_spec(session_id: str = "s1", **fields: Any) -> SessionSpec:
    values: dict[str, Any] = {
        "id": session_id,
        "user": "alice",
        "resource_class": "small",
        "cpu": None,
        "memory": None,
        "image": None,
        "token": f"token-{session_id}-{os.urandom(8).hex()}",
        "environment": {"SESSION_SECRET": SECRET},
    }
    values.update(fields)
    return SessionSpec(**values)


@asynccontextmanager
async def launched(launcher: LocalLauncher) -> AsyncIterator[LocalLauncher]:
    """A prepared launcher; closed at the end, every process left of its servers (their
    command lines name its home) killed, and the root slots of pooled servers a failing test
    left handed out emptied (a sandbox's are mounts)."""
    await launcher.prepare()
    try:
        yield launcher
    finally:
        await launcher.close()
        for process in psutil.Process().children(recursive=True):
            try:
                if str(launcher.home) in " ".join(process.cmdline()):
                    process.kill()
                    process.wait(10)
            except psutil.Error:
                continue
        for slot in launcher.servers.glob("pool-*/root"):
            launcher.sandbox.clear_slot(slot)


def _family(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


async def poll_until(
    launcher: LocalLauncher,
    spec: SessionSpec,
    state: dict[str, Any],
    done: Callable[[LaunchStatus], bool],
    waiting: str,
) -> LaunchStatus:
    """Poll as the session service does until ``done``; ``waiting`` and the server's logs
    fail the test after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = await launcher.poll(spec, state)
        if done(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{waiting}: {await launcher.logs(spec, state, 40)}")


async def wait_ready(
    launcher: LocalLauncher, spec: SessionSpec, state: dict[str, Any]
) -> LaunchStatus:
    def done(status: LaunchStatus) -> bool:
        ready = status.phase == LaunchPhase.RUNNING and status.ready
        return ready or status.phase == LaunchPhase.FAILED

    status = await poll_until(launcher, spec, state, done, "not ready")
    assert status.phase != LaunchPhase.FAILED, (status, await launcher.logs(spec, state, 40))
    return status


async def wait_end(
    launcher: LocalLauncher, spec: SessionSpec, state: dict[str, Any]
) -> LaunchStatus:
    def done(status: LaunchStatus) -> bool:
        return status.phase in (LaunchPhase.FAILED, LaunchPhase.STOPPED)

    return await poll_until(launcher, spec, state, done, "still running")


def gone(pid: int) -> bool:
    """The process ended (a zombie left for its parent to reap counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def auth(spec: SessionSpec) -> dict[str, str]:
    return {"Authorization": f"token {spec.token}"}


def run_in_kernel(url: str, spec: SessionSpec, state: dict[str, Any], code: str) -> str:
    """Start a kernel through the server's REST API, run ``code`` in it, return its stdout."""
    answer = httpx.post(f"{url}api/kernels", headers=auth(spec), json={"name": "python3"})
    assert answer.status_code == 201, answer.text
    connection = Path(state["server_dir"]) / "runtime" / f"kernel-{answer.json()['id']}.json"
    client = BlockingKernelClient()
    client.load_connection_file(str(connection))
    client.start_channels(hb=False)  # heartbeats miss on a busy machine: wait for the reply
    try:
        client.wait_for_ready(timeout=START_TIMEOUT)
        out: list[str] = []

        def collect(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                out.append(message["content"]["text"])

        reply = client.execute_interactive(code, output_hook=collect, timeout=START_TIMEOUT)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


def assert_kernel_sees_the_session(
    url: str, spec: SessionSpec, state: dict[str, Any], workspace: Path
) -> None:
    """A kernel of the server has the session's variables and runs in its workspace (a file
    it writes in its directory lands there: a sandbox may show the workspace at another path),
    and neither the secret nor the token is on a command line of the server or the kernel."""
    marker = f"cwd-{os.urandom(4).hex()}"
    printed = run_in_kernel(
        url, spec, state, f"import os; print(os.environ['SESSION_SECRET']); open('{marker}', 'w')"
    )
    assert printed.split() == [SECRET]
    assert (workspace / marker).is_file()
    family = _family(state["pid"])
    assert len(family) >= 2, "the server and its kernel"
    for process in family:
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert SECRET not in command_line
        assert spec.token not in command_line


def test_on_demand_server_needs_its_token_and_gives_kernels_the_environment(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with launched(LocalLauncher(settings(tmp_path))) as launcher:
            spec = make_spec()
            state = await launcher.start(spec)
            assert state["pooled"] is False
            status = await wait_ready(launcher, spec, state)
            assert status.url == f"http://127.0.0.1:{state['port']}/sessions/{spec.id}/"
            assert [step.name for step in status.steps] == ["workspace", "server", "ready"]
            assert all(step.status == StepStatus.DONE for step in status.steps)

            assert httpx.get(f"{status.url}api/status").status_code == 403
            wrong = {"Authorization": "token not-the-token"}
            assert httpx.get(f"{status.url}api/status", headers=wrong).status_code == 403
            assert httpx.get(f"{status.url}api/status", headers=auth(spec)).status_code == 200
            handout = httpx.post(
                f"{status.url}nbplane/handout", headers=auth(spec), json={"token": "other"}
            )
            assert handout.status_code == 409, "a server started for a session is its own"

            workspace = tmp_path / "home" / "sessions" / "alice" / "s1"
            assert Path(state["workspace"]) == workspace.absolute()
            assert_kernel_sees_the_session(status.url, spec, state, workspace)

            log = Path(state["log"])
            assert stat.S_IMODE(log.stat().st_mode) == 0o600
            assert "Jupyter Server" in await launcher.logs(spec, state, 200)
            assert len((await launcher.logs(spec, state, 3)).splitlines()) == 3

            family = _family(state["pid"])
            await launcher.stop(spec, state, purge=False)
            assert all(gone(process.pid) for process in family), "the server and its kernel"
            assert workspace.is_dir(), "stop keeps the workspace"
            assert (await launcher.poll(spec, state)).phase == LaunchPhase.FAILED

    run(main)


async def wait_pooled(launcher: LocalLauncher, count: int = 1) -> list[int]:
    deadline = time.monotonic() + START_TIMEOUT
    while len(launcher.pooled_pids) < count:
        assert time.monotonic() < deadline, "the pool never filled"
        await asyncio.sleep(0.1)
    return launcher.pooled_pids


def test_pooled_server_becomes_the_sessions_own(tmp_path: Path) -> None:
    async def main() -> None:
        async with launched(LocalLauncher(settings(tmp_path, pool=1))) as launcher:
            (pooled,) = await wait_pooled(launcher)
            spec = make_spec(launcher.new_id(), directory="project/notes")
            state = await launcher.start(spec)
            assert state["pooled"] is True and state["pid"] == pooled
            status = await wait_ready(launcher, spec, state)
            assert status.url is not None
            assert "handed out" in (status.steps[1].detail or "")

            assert httpx.get(f"{status.url}api/status").status_code == 403
            workspace = Path(state["workspace"])
            put = httpx.put(
                f"{status.url}api/contents/hello.txt",
                headers=auth(spec),
                json={"type": "file", "format": "text", "content": "hi"},
            )
            assert put.status_code == 201, put.text
            assert (workspace / "hello.txt").read_text() == "hi"
            assert_kernel_sees_the_session(status.url, spec, state, workspace)

            opened = httpx.get(f"{status.url}?token={spec.token}", follow_redirects=True)
            assert opened.status_code == 200
            assert opened.url.path == f"/sessions/{spec.id}/lab/tree/project/notes"
            assert "apputils-extension:announcements" in opened.text, "news pop-up disabled"

            again = httpx.post(
                f"{status.url}nbplane/handout", headers=auth(spec), json={"token": "other"}
            )
            assert again.status_code == 409, "a server is handed out once"

            (refilled,) = await wait_pooled(launcher)
            assert refilled != pooled
            await launcher.stop(spec, state, purge=True)
            assert not workspace.exists()
            await launcher.close()
            assert gone(refilled), "close stops the servers nobody was given"

    run(main)


def test_hibernate_keeps_files_resume_finds_them_purge_deletes(tmp_path: Path) -> None:
    async def main() -> None:
        async with launched(LocalLauncher(settings(tmp_path, pool=1))) as launcher:
            await wait_pooled(launcher)
            spec = make_spec(launcher.new_id())
            state = await launcher.start(spec)
            assert state["pooled"] is True
            status = await wait_ready(launcher, spec, state)
            put = httpx.put(
                f"{status.url}api/contents/kept.txt",
                headers=auth(spec),
                json={"type": "file", "format": "text", "content": "still here"},
            )
            assert put.status_code == 201, put.text

            hibernated = await launcher.hibernate(spec, state)
            assert "pid" not in hibernated
            assert (await launcher.poll(spec, hibernated)).phase == LaunchPhase.STOPPED
            assert gone(state["pid"])
            workspace = Path(hibernated["workspace"])
            assert (workspace / "kept.txt").read_text() == "still here"

            resumed = await launcher.start(spec)
            assert resumed["pooled"] is False, "the pool's servers have other ids (base URLs)"
            assert resumed["workspace"] == state["workspace"]
            status = await wait_ready(launcher, spec, resumed)
            read = httpx.get(f"{status.url}api/contents/kept.txt", headers=auth(spec))
            assert read.status_code == 200 and read.json()["content"] == "still here"

            await launcher.stop(spec, resumed, purge=True)
            assert not workspace.exists()
            assert not (tmp_path / "home" / "session-servers" / spec.id).exists()
            assert not Path(resumed["server_dir"]).exists()

    run(main)


class TakenPortLauncher(LocalLauncher):
    """Chooses a port another process listens on, first; what a lost race looks like."""

    taken: int

    def choose_port(self) -> int:
        return self.taken


def test_a_taken_port_does_not_fail_the_session(tmp_path: Path) -> None:
    async def main() -> None:
        with socket.socket() as occupant:
            occupant.bind(("127.0.0.1", 0))
            occupant.listen()
            launcher = TakenPortLauncher(settings(tmp_path))
            launcher.taken = occupant.getsockname()[1]
            async with launched(launcher):
                spec = make_spec()
                state = await launcher.start(spec)
                assert state["port"] == launcher.taken
                status = await wait_ready(launcher, spec, state)
                assert status.url is not None
                assert status.url.startswith("http://127.0.0.1:")
                assert status.url != f"http://127.0.0.1:{launcher.taken}/sessions/{spec.id}/"
                assert "already in use" in await launcher.logs(spec, state, 500)
                assert httpx.get(f"{status.url}api/status", headers=auth(spec)).status_code == 200
                await launcher.stop(spec, state, purge=True)

    run(main)


def test_a_server_that_exits_at_once_fails_with_its_logs(tmp_path: Path) -> None:
    command = tmp_path / "broken-jupyter"
    command.write_text(
        "#!/bin/sh\necho starting up\necho 'broken: no such kernel manager' >&2\nexit 3\n"
    )
    command.chmod(0o755)

    async def main() -> None:
        async with launched(
            LocalLauncher(settings(tmp_path, session_command=str(command)))
        ) as launcher:
            spec = make_spec()
            state = await launcher.start(spec)
            status = await wait_end(launcher, spec, state)
            assert status.phase == LaunchPhase.FAILED
            assert status.reason is not None
            assert "code 3" in status.reason and "broken: no such kernel manager" in status.reason
            assert (
                status.steps[-1].name == "server" and status.steps[-1].status == StepStatus.FAILED
            )
            logs = await launcher.logs(spec, state, 10)
            assert "starting up" in logs and "broken" in logs
            await launcher.stop(spec, state, purge=False)

    run(main)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    )
    return done.stdout.strip()


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on loopback (git's dumb protocol): a sandboxed session sees
    none of the test's files, but it shares the network."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_repository_is_cloned_at_its_commit_and_a_bad_one_fails_with_gits_message(
    tmp_path: Path,
) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "--quiet", cwd=origin)
    (origin / "job.txt").write_text("first\n")
    git("add", "job.txt", cwd=origin)
    git("commit", "--quiet", "-m", "first", cwd=origin)
    first = git("rev-parse", "HEAD", cwd=origin)
    (origin / "job.txt").write_text("second\n")
    git("commit", "--quiet", "-am", "second", cwd=origin)
    git("clone", "--quiet", "--bare", str(origin), str(tmp_path / "origin.git"), cwd=tmp_path)
    git("update-server-info", cwd=tmp_path / "origin.git")

    async def main(url: str) -> None:
        async with launched(LocalLauncher(settings(tmp_path, pool=1))) as launcher:
            spec = make_spec(repository=f"{url}/origin.git", commit=first)
            state = await launcher.start(spec)
            assert state["pooled"] is False, "a clone starts on demand"
            status = await wait_ready(launcher, spec, state)
            assert [step.name for step in status.steps] == [
                "workspace",
                "repository",
                "server",
                "ready",
            ]
            assert (Path(state["workspace"]) / "job.txt").read_text() == "first\n"
            await launcher.stop(spec, state, purge=True)

            missing = make_spec("s2", repository=f"{url}/no-such-repo")
            state = await launcher.start(missing)
            status = await wait_end(launcher, missing, state)
            assert status.phase == LaunchPhase.FAILED and status.reason is not None
            assert "cloning the repository exited with code 128" in status.reason
            assert "no-such-repo" in status.reason and "fatal" in status.reason
            assert status.steps[1].name == "repository"
            assert status.steps[1].status == StepStatus.FAILED

            with pytest.raises(InvalidInput) as bad:
                await launcher.start(make_spec("s3", directory="../elsewhere"))
            assert bad.value.fields["field"] == "directory"

    with served(tmp_path) as url:
        asyncio.run(main(url))


RESTARTED_SERVER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from nbplane.sessions.launchers.base import SessionSpec
    from nbplane.sessions.launchers.local import LocalLauncher
    from nbplane.settings import Settings

    async def main():
        launcher = LocalLauncher(Settings(home=sys.argv[1], session_pool_size=1))
        await launcher.prepare()
        while not launcher.pooled_pids:
            await asyncio.sleep(0.1)
        spec = SessionSpec(**json.loads(sys.argv[2]))
        state = await launcher.start(spec)
        while not launcher.pooled_pids:
            await asyncio.sleep(0.1)
        print(json.dumps({"state": state, "pool": launcher.pooled_pids}), flush=True)
        os._exit(0)  # no close(): the nbplane server died

    asyncio.run(main())
    """
)


def test_a_restarted_nbplane_server_polls_and_stops_what_an_earlier_one_started(
    tmp_path: Path,
) -> None:
    spec = make_spec()
    fields = {key: getattr(spec, key) for key in SessionSpec.__dataclass_fields__}
    done = subprocess.run(
        [sys.executable, "-c", RESTARTED_SERVER, str(tmp_path / "home"), json.dumps(fields)],
        capture_output=True,
        text=True,
        timeout=2 * START_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    earlier = json.loads(done.stdout)
    state, (abandoned,) = earlier["state"], earlier["pool"]

    async def main() -> None:
        async with launched(LocalLauncher(settings(tmp_path))) as launcher:
            assert gone(abandoned), "its unassigned pooled server is stopped"
            status = await wait_ready(launcher, spec, state)
            assert httpx.get(f"{status.url}api/status", headers=auth(spec)).status_code == 200
            await launcher.stop(spec, state, purge=False)
            assert gone(state["pid"])
            assert (await launcher.poll(spec, state)).phase == LaunchPhase.FAILED
            assert Path(state["workspace"]).is_dir()

    try:
        run(main)
    finally:
        for pid in (abandoned, state["pid"]):
            for process in _family(pid):
                process.kill()
