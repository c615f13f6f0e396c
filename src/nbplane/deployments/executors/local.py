"""The local job executor: each execution is a process of this machine, in its own session,
inside the sandbox NBPLANE_SANDBOX chooses (:mod:`nbplane.platform.sandbox`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus, JobExecutor
from nbplane.errors import ConfigError
from nbplane.platform import processes
from nbplane.platform.sandbox import sandbox_named, sqlite_file

STOP_GRACE_SECONDS = 5.0


class LocalExecutor(JobExecutor):
    name: ClassVar[str] = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sandbox = sandbox_named(self.settings)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _directory(self, execution_id: str) -> Path:
        return self.settings.home / "executions" / execution_id

    async def start(self, ticket: ExecutionTicket) -> dict[str, Any]:
        """Run the command in the sandbox: it writes only ``work/`` of its execution's
        directory and its team's data directory; its log beside ``work/`` (one per attempt) is
        opened here, where it cannot replace it."""
        directory = self._directory(ticket.execution_id)
        work = directory / "work"
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        writable = [work, *self._data_directories(ticket)]
        environment = self.sandbox.environment(
            work,
            {**ticket.environment, "NBPLANE_WORK_DIR": str(work), "PYTHONUNBUFFERED": "1"},
        )
        log_path = directory / f"process-{ticket.attempt}.log"
        with open(log_path, "wb") as log:
            child = self.sandbox.start(
                ticket.command,
                cwd=work,
                environment=environment,
                output=log.fileno(),
                writable=writable,
            )
        self._children[child.pid] = child
        return {
            "pid": child.pid,
            "host": os.uname().nodename,
            "directory": str(directory),
            "log": str(log_path),
        }

    def _data_directories(self, ticket: ExecutionTicket) -> list[Path]:
        """Where the job's database lives on this machine: its team's directory, and the
        directory of the SQLite file NBPLANE_DB_URL names for every team's jobs (the server's
        choice), which must then hold nothing of nbplane's own."""
        directories = []
        if ticket.data_directory:
            directories.append(Path(ticket.data_directory))
            directories[0].mkdir(mode=0o700, parents=True, exist_ok=True)
        database = sqlite_file(self.settings.db_url) if self.settings.db_url else None
        if database is not None and self.sandbox.isolates:
            store = sqlite_file(self.settings.resolved_store_url)
            home = self.settings.home.resolve()
            place = database.parent.resolve()
            if home.is_relative_to(place) or (store is not None and store.is_relative_to(place)):
                raise ConfigError(
                    "NBPLANE_DB_URL names a SQLite file beside nbplane's own files; sandboxed "
                    "jobs can use it only in a directory of its own",
                    field="NBPLANE_DB_URL",
                )
            place.mkdir(parents=True, exist_ok=True)
            directories.append(place)
        return directories

    async def poll(self, state: dict[str, Any]) -> ExecutorStatus:
        return self._status(state)

    def _status(self, state: dict[str, Any]) -> ExecutorStatus:
        pid = int(state["pid"])
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return ExecutorStatus(running=True)
            self._children.pop(pid, None)
            code = self.sandbox.exit_code(code)
            return ExecutorStatus(running=False, exit_code=code, reason=_signal_reason(code))
        if state.get("host") != os.uname().nodename:
            return ExecutorStatus(running=True)  # another machine's process: not ours to judge
        try:
            os.kill(pid, 0)  # started by an earlier server process on this machine
        except ProcessLookupError:
            return ExecutorStatus(running=False, reason="the process is gone")
        except PermissionError:
            pass
        return ExecutorStatus(running=True)

    async def stop(self, state: dict[str, Any]) -> None:
        pid = int(state["pid"])
        if state.get("host") != os.uname().nodename:
            return
        if await processes.terminate(
            pid,
            ended=lambda: not self._status(state).running,
            grace=STOP_GRACE_SECONDS,
            send=self.sandbox.signal,
        ):
            return
        child = self._children.pop(pid, None)
        if child is not None:
            await asyncio.to_thread(child.wait)

    async def logs(self, state: dict[str, Any]) -> str | None:
        path = Path(state.get("log", ""))
        return path.read_text(errors="replace") if path.is_file() else None

    async def discard(self, execution_id: str) -> None:
        """Its directory: the job's ``work/`` (its HOME) and ``process.log``."""
        await asyncio.to_thread(shutil.rmtree, self._directory(execution_id), ignore_errors=True)


def _signal_reason(code: int) -> str | None:
    if code >= 0:
        return None
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"
