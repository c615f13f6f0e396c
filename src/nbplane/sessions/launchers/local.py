"""The local session launcher: a Jupyter server process per session, on loopback.

Each session's server is ``jupyter-lab`` (or ``jupyter-server``, NBPLANE_SESSION_COMMAND) found
beside nbplane's Python, listening on 127.0.0.1 on a port of its own, with the session's token
and its own workspace, ``NBPLANE_HOME/sessions/<user>/<session id>``, which hibernate and stop
keep and only a purge deletes. Servers run in their own process session, so they outlive a
restart of the nbplane server; the state a start returns (pid and start time, port, workspace,
log) lets a restarted server find, poll and stop them. Each server runs in the sandbox
NBPLANE_SANDBOX chooses (:mod:`nbplane.platform.sandbox`), with the session's variables and no
other of the server's: with bubblewrap, it and its kernels and terminals write only its
workspace (also its HOME) and its runtime directory, and see neither nbplane's home, key and
database nor another session's workspace; with none, every server runs as the nbplane server's
own user and sees all of that. It runs no images (``image`` is ignored) and does not enforce CPU
or memory.

Every server's base URL is ``/sessions/<session id>/``, the path users reach it at through
nbplane's proxy. Starting JupyterLab takes seconds, so NBPLANE_SESSION_POOL_SIZE servers are
started ahead of time, each for a session id chosen then (:meth:`LocalLauncher.new_id` gives a
new session the id of a ready one), and handed out on create: a pooled server serves a ``root``
slot (an empty directory,
:meth:`~nbplane.platform.sandbox.Sandbox.make_slot`) that the handout fills with the session's
workspace, and ``POST /nbplane/handout`` (our server extension,
:mod:`nbplane.sessions.launchers._jupyter`) gives it the session's token and environment. Until
then a pooled server sees no workspace. A session that asks for a repository clone starts on
demand, and so does a resume (the pool's servers have other ids).

Every server's own files live in ``NBPLANE_HOME/session-servers/<name>/``: ``server.log``
(mode 0600), ``runtime/`` (the server's JUPYTER_RUNTIME_DIR, where it writes the port it really
bound; the only one of them it can write), and for pooled servers ``root`` and ``server.json``
(who owns it, for a restarted nbplane to stop pooled servers left behind). ``<name>`` is the
session id, or for a pooled server ``pool-<random>`` and a symlink named by the session id once
it is handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import httpx
import psutil

from nbplane.errors import ConfigError, InvalidInput
from nbplane.platform import processes
from nbplane.platform.processes import alive, running
from nbplane.platform.sandbox import sandbox_named
from nbplane.sessions.jupyter_api import answers, session_client
from nbplane.sessions.launchers.base import (
    LaunchPhase,
    LaunchStatus,
    LaunchStep,
    SessionLauncher,
    SessionSpec,
    StepStatus,
    check_spec,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PORT_RETRIES = 20
"""Ports the server tries after the chosen one when another process took it meanwhile."""
STOP_GRACE_SECONDS = 10.0
"""How long a server has to shut its kernels down after SIGTERM before it is killed."""
POOL_CHECK_SECONDS = 0.1
"""How often the pool looks at servers still starting."""
POOL_IDLE_SECONDS = 5.0
"""How often the pool checks that its ready servers are still alive."""
POOL_MAX_BACKOFF_SECONDS = 60.0
"""Longest wait before starting pooled servers again after they kept failing."""
CONFIG_PATH = Path(__file__).with_name("jupyter_config")
"""Added to JUPYTER_CONFIG_PATH: enables our server extension and the default URL, and turns
off JupyterLab's news pop-up."""
LOG_NAME = "server.log"
READY_MARKER = "repository-ready"
DIRECTORY_VARIABLE = "NBPLANE_SESSION_DIRECTORY"
"""Tells a server started on demand which directory to open (read by our server extension)."""

CLONE_SCRIPT = """\
echo "nbplane: cloning the repository into the workspace"
git clone --quiet -- "$NBPLANE_SESSION_REPOSITORY" . || exit
if [ -n "$NBPLANE_SESSION_COMMIT" ]; then
    git -c advice.detachedHead=false checkout --quiet "$NBPLANE_SESSION_COMMIT" -- || exit
fi
: > "$NBPLANE_SESSION_CLONED"
echo "nbplane: repository checked out"
unset NBPLANE_SESSION_REPOSITORY NBPLANE_SESSION_COMMIT NBPLANE_SESSION_CLONED
exec "$@"
"""
"""Runs before the server when a session asks for a repository: the URL and commit come in
the environment (a URL may carry credentials), and git's own message is the log's last line
when it fails."""


@dataclass
class _Pooled:
    """A server started ahead of time, not yet anyone's."""

    pid: int
    started: float
    token: str
    directory: Path
    session_id: str
    """The id of the session it will serve: its base URL says it."""
    url: str | None = None
    """Set once it answers ``api/status``: only then can it be handed out."""


@dataclass
class _Process:
    pid: int
    started: float
    port: int
    directory: Path


class LocalLauncher(SessionLauncher):
    name: ClassVar[str] = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.home = self.settings.home.absolute()
        self.servers = self.home / "session-servers"
        self.sandbox = sandbox_named(self.settings)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        """The processes this launcher started itself: it alone learns their exit codes."""
        self._pool: list[_Pooled] = []
        self._promised: dict[str, _Pooled] = {}
        """Ready servers whose ids ``new_id`` gave out, waiting for their session's start."""
        self._pool_task: asyncio.Task[None] | None = None
        self._pool_wake = asyncio.Event()
        self._owner = {"pid": os.getpid(), "started": psutil.Process().create_time()}
        self._http = session_client(httpx.Timeout(5.0, connect=1.0))

    # hooks for tests and subclasses

    def choose_port(self) -> int:
        """A TCP port on loopback that nothing listens on now; the server moves on to another
        one if it was taken meanwhile."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            return int(sock.getsockname()[1])

    @property
    def pooled_pids(self) -> list[int]:
        """Process ids of the pooled servers ready to be handed out."""
        return [member.pid for member in self._pool if member.url is not None]

    # the extension point

    async def prepare(self) -> None:
        self.servers.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._stop_abandoned_pool()
        if self.settings.session_pool_size > 0 and self._pool_task is None:
            self._pool_task = asyncio.create_task(self._keep_pool())

    def new_id(self) -> str:
        """The id of a ready pooled server, taken from the pool for this session; a new one
        when none is ready."""
        member = self._take_ready()
        if member is None:
            return super().new_id()
        self._promised[member.session_id] = member
        return member.session_id

    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        check_spec(spec)
        directory = str(PurePosixPath(spec.directory)) if spec.directory else None
        workspace = self._workspace(spec)
        await asyncio.to_thread(self._forget_server, spec.id)
        workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sandbox.give(workspace)
        state = {"host": os.uname().nodename, "workspace": str(workspace)}
        member = self._promised.pop(spec.id, None)
        if member is not None and spec.repository is None:
            try:
                return {**state, **await self._handout(member, spec, workspace, directory)}
            except httpx.HTTPError as exc:
                log.warning("pooled Jupyter server %s refused its handout: %r", member.pid, exc)
        if member is not None:
            await self._discard(member)
        environment = {**spec.environment, "JUPYTER_TOKEN": spec.token}
        if directory:
            environment[DIRECTORY_VARIABLE] = directory
        server_dir = self.servers / spec.id
        prefix: list[str] = []
        clone = spec.repository is not None and not (workspace / ".git").exists()
        if clone:
            (server_dir / "runtime" / READY_MARKER).unlink(missing_ok=True)
            prefix = ["/bin/sh", "-c", CLONE_SCRIPT, "nbplane-clone"]
            environment |= {
                "NBPLANE_SESSION_REPOSITORY": spec.repository or "",
                "NBPLANE_SESSION_COMMIT": spec.commit or "",
                "NBPLANE_SESSION_CLONED": str(server_dir / "runtime" / READY_MARKER),
                "GIT_TERMINAL_PROMPT": "0",
            }
        process = self._spawn(server_dir, workspace, spec.id, environment, prefix)
        return {
            **state,
            **_process_state(process),
            "pooled": False,
            "repository": clone,
        }

    async def poll(self, spec: SessionSpec, state: dict[str, Any]) -> LaunchStatus:
        workspace = LaunchStep("workspace", StepStatus.DONE, state.get("workspace"))
        if "pid" not in state:
            return LaunchStatus(LaunchPhase.STOPPED, steps=[workspace], reason="not running")
        if state.get("host") != os.uname().nodename:
            return LaunchStatus(
                LaunchPhase.STARTING,
                steps=[workspace],
                reason=f"runs on {state.get('host')}: only the nbplane server there sees it",
            )
        pid, directory = int(state["pid"]), Path(state["server_dir"])
        steps = [workspace]
        cloning = False
        if state.get("repository"):
            cloning = not (directory / "runtime" / READY_MARKER).exists()
            steps.append(
                LaunchStep(
                    "repository",
                    StepStatus.RUNNING if cloning else StepStatus.DONE,
                    "git clone" + (f", checkout {spec.commit}" if spec.commit else ""),
                )
            )
        ended, code = self._ended(pid, float(state["started"]))
        if ended:
            what = "cloning the repository" if cloning else "the Jupyter server"
            words = f"{what} exited" + (f" with code {code}" if code is not None else "")
            last = _last_line(Path(state["log"]))
            if cloning:
                steps[-1] = LaunchStep("repository", StepStatus.FAILED, last or words)
            else:
                steps.append(LaunchStep("server", StepStatus.FAILED, words))
            return LaunchStatus(
                LaunchPhase.FAILED, steps=steps, reason=f"{words}: {last}" if last else words
            )
        url = _bound_url(directory, spec.id)
        if cloning or url is None:
            steps.append(
                LaunchStep(
                    "server",
                    StepStatus.PENDING if cloning else StepStatus.RUNNING,
                    f"starting, pid {pid}",
                )
            )
            steps.append(LaunchStep("ready", StepStatus.PENDING))
            return LaunchStatus(LaunchPhase.STARTING, steps=steps)
        how = "started ahead of time, handed out" if state.get("pooled") else "started"
        steps.append(LaunchStep("server", StepStatus.DONE, f"{how}: pid {pid}, {url}"))
        # A server that listens runs; one busy for a while (a kernel holding it) is not gone.
        ready = await answers(self._http, url, spec.token)
        steps.append(
            LaunchStep("ready", StepStatus.DONE, "answers api/status")
            if ready
            else LaunchStep("ready", StepStatus.RUNNING, "waiting for api/status")
        )
        return LaunchStatus(LaunchPhase.RUNNING, url=url, ready=ready, steps=steps)

    async def hibernate(self, spec: SessionSpec, state: dict[str, Any]) -> dict[str, Any]:
        await self._stop_process(state)
        return {key: value for key, value in state.items() if key not in ("pid", "started")}

    async def stop(self, spec: SessionSpec, state: dict[str, Any], *, purge: bool) -> None:
        promised = self._promised.pop(spec.id, None)  # a create refused before its start
        if promised is not None:
            await self._discard(promised)
        await self._stop_process(state)
        if purge:
            await asyncio.to_thread(self._forget_server, spec.id)
            await asyncio.to_thread(shutil.rmtree, self._workspace(spec), ignore_errors=True)
            if state.get("server_dir"):
                await asyncio.to_thread(self._remove_server_dir, Path(state["server_dir"]))

    async def logs(self, spec: SessionSpec, state: dict[str, Any], tail: int) -> str:
        path = Path(state["log"]) if state.get("log") else self.servers / spec.id / LOG_NAME
        return await asyncio.to_thread(_tail, path, tail)

    async def close(self) -> None:
        if self._pool_task is not None:
            self._pool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pool_task
            self._pool_task = None
        members, self._pool = [*self._pool, *self._promised.values()], []
        self._promised.clear()
        await asyncio.gather(*(self._discard(member) for member in members))
        await self._http.aclose()

    # processes

    def _workspace(self, spec: SessionSpec) -> Path:
        for value, name in ((spec.user, "user"), (spec.id, "id")):
            if not value or "/" in value or value in (".", ".."):
                raise InvalidInput(f"{name}: {value!r} cannot name a directory", field=name)
        return self.home / "sessions" / spec.user / spec.id

    def _command(self) -> list[str]:
        name = self.settings.session_command
        found = Path(name) if "/" in name else Path(sys.executable).parent / name
        if not found.is_file():
            found = Path(shutil.which(name) or found)
        if not found.is_file():
            raise ConfigError(
                f"session command {name!r} not found beside {sys.executable} or on PATH",
                field="NBPLANE_SESSION_COMMAND",
            )
        return [str(found)]

    def _spawn(
        self,
        directory: Path,
        root: Path,
        session_id: str,
        environment: dict[str, str],
        prefix: list[str] | None = None,
    ) -> _Process:
        """Start a Jupyter server serving ``root`` at ``/sessions/{session_id}/``; its output
        goes to a log only we read."""
        runtime = directory / "runtime"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        port = self.choose_port()
        program = self._command()
        command = [
            *(prefix or []),
            *program,
            "--no-browser",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={port}",
            f"--ServerApp.port_retries={PORT_RETRIES}",
            f"--ServerApp.root_dir={root}",
            f"--ServerApp.base_url=/sessions/{session_id}/",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        config_path = os.pathsep.join(
            filter(None, [str(CONFIG_PATH), os.environ.get("JUPYTER_CONFIG_PATH")])
        )
        env = self.sandbox.environment(
            root,  # HOME: settings and history live with the files, as on Kubernetes
            {
                **environment,
                "JUPYTER_CONFIG_PATH": config_path,
                "JUPYTER_RUNTIME_DIR": str(runtime),
            },
        )
        descriptor = os.open(directory / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            child = self.sandbox.start(
                command,
                cwd=root,
                environment=env,
                output=descriptor,
                writable=[root, runtime],
                readable=[Path(path) for path in program],
            )
        finally:
            os.close(descriptor)
        self._children[child.pid] = child
        return _Process(child.pid, psutil.Process(child.pid).create_time(), port, directory)

    def _ended(self, pid: int, started: float) -> tuple[bool, int | None]:
        """Whether the process ended, with its exit code when this launcher started it."""
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            return code is not None, None if code is None else self.sandbox.exit_code(code)
        return running(pid, started) is None, None

    async def _terminate(self, pid: int, started: float) -> None:
        """SIGTERM the server (it shuts its kernels down), SIGKILL whatever is left later."""
        leader = running(pid, started)
        if leader is None:
            self._reap(pid)
            return
        family = [leader]
        with contextlib.suppress(psutil.Error):
            family += leader.children(recursive=True)

        def ended() -> bool:
            self._reap(pid)
            return not any(alive(member) for member in family)

        if not await processes.terminate(
            pid, ended=ended, grace=STOP_GRACE_SECONDS, send=self.sandbox.signal
        ):
            for member in family:
                with contextlib.suppress(psutil.Error):
                    member.kill()
        child = self._children.pop(pid, None)
        if child is not None:
            await asyncio.to_thread(child.wait)

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None:
            child.poll()

    async def _stop_process(self, state: dict[str, Any]) -> None:
        if "pid" in state and state.get("host") == os.uname().nodename:
            await self._terminate(int(state["pid"]), float(state["started"]))
            if state.get("server_dir"):
                await asyncio.to_thread(self.sandbox.clear_slot, Path(state["server_dir"]) / "root")

    def _forget_server(self, session_id: str) -> None:
        """Remove an earlier server's directory of this session (its process is stopped)."""
        path = self.servers / session_id
        if path.is_symlink():
            self._remove_server_dir(path.resolve())
            path.unlink(missing_ok=True)
        elif path.is_dir():
            self._remove_server_dir(path)

    def _remove_server_dir(self, path: Path) -> None:
        """Delete a server's directory; a pooled one's root slot is emptied first, so the
        workspace it showed is never deleted with it."""
        self.sandbox.clear_slot(path / "root")
        shutil.rmtree(path, ignore_errors=True)

    # the warm pool

    def _take_ready(self) -> _Pooled | None:
        for member in self._pool:
            if member.url is not None and not self._ended(member.pid, member.started)[0]:
                self._pool.remove(member)
                self._pool_wake.set()
                return member
        return None

    async def _handout(
        self, member: _Pooled, spec: SessionSpec, workspace: Path, directory: str | None
    ) -> dict[str, Any]:
        """Point the pooled server's root at the workspace, give it the session's token and
        environment; the pooled server is the session's from then on."""
        assert member.url is not None
        self.sandbox.fill_slot(member.directory / "root", workspace)
        response = await self._http.post(
            f"{member.url}nbplane/handout",
            headers={"Authorization": f"token {member.token}"},
            json={"token": spec.token, "environment": spec.environment, "directory": directory},
        )
        response.raise_for_status()
        _write_json(member.directory / "server.json", {"owner": self._owner, "session": spec.id})
        (self.servers / spec.id).symlink_to(member.directory, target_is_directory=True)
        port = int(httpx.URL(member.url).port or 0)
        process = _Process(member.pid, member.started, port, member.directory)
        return {**_process_state(process), "pooled": True, "repository": False}

    def _spawn_pooled(self) -> _Pooled:
        directory = self.servers / f"pool-{secrets.token_hex(8)}"
        directory.mkdir(mode=0o700, parents=True)
        self.sandbox.make_slot(directory / "root")
        token, session_id = secrets.token_urlsafe(32), super().new_id()
        process = self._spawn(
            directory,
            directory / "root",
            session_id,
            {"JUPYTER_TOKEN": token, "NBPLANE_SESSION_POOLED": "1"},
        )
        _write_json(
            directory / "server.json",
            {"owner": self._owner, "session": None, "pid": process.pid, "started": process.started},
        )
        return _Pooled(process.pid, process.started, token, directory, session_id)

    async def _discard(self, member: _Pooled) -> None:
        await self._terminate(member.pid, member.started)
        await asyncio.to_thread(self._remove_server_dir, member.directory)

    async def _keep_pool(self) -> None:
        """Keep NBPLANE_SESSION_POOL_SIZE servers started; back off while they keep failing."""
        loop = asyncio.get_running_loop()
        failures = 0
        next_spawn = loop.time()
        while True:
            self._pool_wake.clear()
            try:
                failures, next_spawn = await self._pool_turn(failures, next_spawn)
            except Exception:  # a pool task that dies would leave every create on demand
                log.exception("keeping the pool of Jupyter servers failed; retrying")
                failures += 1
                next_spawn = loop.time() + min(POOL_MAX_BACKOFF_SECONDS, 2.0**failures)
            starting = any(member.url is None for member in self._pool)
            short = len(self._pool) < self.settings.session_pool_size
            wait = POOL_CHECK_SECONDS if starting else POOL_IDLE_SECONDS
            if short and not starting:
                wait = max(POOL_CHECK_SECONDS, next_spawn - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pool_wake.wait(), wait)

    async def _pool_turn(self, failures: int, next_spawn: float) -> tuple[int, float]:
        """Drop servers that died, note the ones that answer, start the missing ones."""
        loop = asyncio.get_running_loop()
        for member in list(self._pool):
            if member not in self._pool or member.url is not None:
                continue
            ended, code = self._ended(member.pid, member.started)
            if ended:
                self._pool.remove(member)
                failures += 1
                next_spawn = loop.time() + min(POOL_MAX_BACKOFF_SECONDS, 2.0**failures)
                log.warning(
                    "a pooled Jupyter server exited with code %s: %s",
                    code,
                    _tail(member.directory / LOG_NAME, 5),
                )
                await self._discard(member)
                continue
            url = _bound_url(member.directory, member.session_id)
            if url is not None and await answers(self._http, url, member.token):
                member.url = url
                failures = 0
        for member in [m for m in self._pool if m.url is not None]:
            if self._ended(member.pid, member.started)[0]:
                self._pool.remove(member)
                await self._discard(member)
        while len(self._pool) < self.settings.session_pool_size and loop.time() >= next_spawn:
            self._pool.append(await asyncio.to_thread(self._spawn_pooled))
        return failures, next_spawn

    async def _stop_abandoned_pool(self) -> None:
        """Stop pooled servers that an nbplane server, now gone, left unassigned."""
        for server_json in self.servers.glob("pool-*/server.json"):
            try:
                info = json.loads(server_json.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            owner = info.get("owner", {})
            if info.get("session") or running(owner.get("pid", 0), owner.get("started", 0)):
                continue
            if "pid" in info:
                await self._terminate(int(info["pid"]), float(info["started"]))
            await asyncio.to_thread(self._remove_server_dir, server_json.parent)


def _process_state(process: _Process) -> dict[str, Any]:
    return {
        "pid": process.pid,
        "started": process.started,
        "port": process.port,
        "server_dir": str(process.directory),
        "log": str(process.directory / LOG_NAME),
    }


def _bound_url(directory: Path, session_id: str) -> str | None:
    """Where the server really listens, from the file it writes once it bound its port (named
    by its pid as it sees it, which a sandbox's namespace changes). The sandbox owns that
    directory: only a small regular file is read, never what a symlink or a pipe offers."""
    for path in (directory / "runtime").glob("jpserver-*.json"):
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                continue
            info = json.loads(os.read(descriptor, 65536))
            return f"http://{LOOPBACK}:{int(info['port'])}/sessions/{session_id}/"
        except (OSError, ValueError, KeyError, TypeError):
            continue
        finally:
            os.close(descriptor)
    return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    fresh = path.with_suffix(".new")
    fresh.write_text(json.dumps(value), encoding="utf-8")
    fresh.replace(path)


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a file, read from its end."""
    if lines <= 0:
        return ""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return ""
    with handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def _last_line(path: Path) -> str:
    """The last line of a log that is not empty."""
    return next((line for line in reversed(_tail(path, 5).splitlines()) if line.strip()), "")
