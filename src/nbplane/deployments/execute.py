"""``nbplane job run-execution ID``: what runs where an executor put it (a local process, a
Kubernetes pod). It holds only ``NBPLANE_URL`` and its execution's credential
(``NBPLANE_EXECUTION_TOKEN``): through the server's execution API it downloads the deployed
version, runs it as the deployed job (its properties, secrets and team's connections), streams
its log while it runs, and records its run and final status itself. It never holds nbplane's
database or key, so a hostile step cannot reach another job's state either."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from nbplane.client import NbplaneClient
from nbplane.deployments.models import DescribeExecutionContext, JobExecutionStatus
from nbplane.errors import ConfigError, NbplaneError, StoreError
from nbplane.jobs.archive import unpack
from nbplane.jobs.backend import JobState
from nbplane.jobs.models import (
    CreateRun,
    DescribeGrantedConnection,
    DescribeJobHistory,
    DescribeRun,
    DescribeRunStep,
    RunStatus,
)
from nbplane.platform.storable import sendable
from nbplane.settings import Settings

FLUSH_SECONDS = 0.2
UNREACHABLE_SECONDS = 120.0
"""How long a call keeps trying while the server restarts (the job goes on meanwhile)."""


class ExecutionChannel(JobState):
    """The execution's side of ``/api/v1/execution``: its run records and its job's state.

    Resume is a feature of runs on a user's machine: a deployed execution runs every step, so
    it reads no earlier execution and keeps no checkpoint."""

    def __init__(self, url: str, token: str) -> None:
        self.client = NbplaneClient(url, token)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call, tried again while the server is unreachable or restarting."""
        deadline = time.monotonic() + UNREACHABLE_SECONDS
        delay = 0.2
        if "json" in kwargs:  # what a job printed may hold text no database keeps
            kwargs["json"] = sendable(kwargs["json"])
        while True:
            try:
                response = self.client.request(method, f"/api/v1/execution{path}", **kwargs)
            except (StoreError, ConfigError) as exc:
                unreachable = isinstance(exc, StoreError) or "url" in exc.fields
                if not unreachable or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if response.status_code == 204:
                return None
            if response.headers.get("content-type", "").startswith("application/json"):
                return response.json()
            return response.content

    def close(self) -> None:
        self.client.close()

    # the execution
    def context(self) -> DescribeExecutionContext:
        return DescribeExecutionContext.model_validate(self.call("GET", ""))

    def archive(self) -> bytes:
        content: bytes = self.call("GET", "/archive")
        return content

    def append_log(self, text: str) -> None:
        if text:
            self.call("POST", "/log", json={"text": text})

    def finish(self, status: JobExecutionStatus, reason: str | None) -> None:
        self.call("POST", "/finish", json={"status": str(status), "reason": reason})

    # run records (RunRecords)
    def create_run(self, run: CreateRun, execution_id: str | None = None) -> DescribeRun:
        return DescribeRun.model_validate(self.call("POST", "/runs", json=run.model_dump()))

    def add_step(self, run_id: int, step: DescribeRunStep, checkpoint: bytes | None) -> None:
        self.call("POST", f"/runs/{run_id}/steps", json=step.model_dump(mode="json"))

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        error: dict[str, Any] | None,
        notebooks: dict[str, str],
    ) -> DescribeRun:
        body = {"status": str(status), "error": error, "notebooks": notebooks}
        return DescribeRun.model_validate(self.call("POST", f"/runs/{run_id}/finish", json=body))

    def job_history(self, job_dir: str) -> DescribeJobHistory:
        """Nothing: a deployed execution runs every step, so its credential reads no record
        of an earlier execution."""
        return DescribeJobHistory()

    def load_checkpoint(self, step_id: int) -> bytes | None:
        return None

    # the job's state (JobState)
    def get_properties(self, job_key: str) -> dict[str, Any]:
        return dict(self.call("GET", "/properties"))

    def set_properties(self, job_key: str, properties: dict[str, Any]) -> None:
        self.call("PUT", "/properties", json=properties)

    def get_secrets(self, job_key: str) -> dict[str, Any]:
        return dict(self.call("GET", "/secrets"))

    def set_secrets(self, job_key: str, secrets: dict[str, Any]) -> None:
        self.call("PUT", "/secrets", json=secrets)

    def connections(self, team: str | None) -> list[DescribeGrantedConnection]:
        return [
            DescribeGrantedConnection.model_validate(c) for c in self.call("GET", "/connections")
        ]


class ServerLog:
    """A text stream that reaches the execution's log on the server every few tenths of a
    second (so it can be followed live), and our own stdout (so the executor keeps it too).
    Text that could not be sent stays pending and goes with the next flush."""

    def __init__(self, channel: ExecutionChannel, echo: TextIO) -> None:
        self.channel, self.echo = channel, echo
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
        self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        self.echo.flush()

    def isatty(self) -> bool:
        return False

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self._send()

    def _send(self) -> None:
        with self._send_lock:
            with self._lock:
                text, self._pending = "".join(self._pending), []
            try:
                self.channel.append_log(text)
            except NbplaneError:
                with self._lock:
                    self._pending.insert(0, text)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._send()


def run_execution(execution_id: str) -> int:
    """Run the execution this process's credential belongs to; the exit code says whether it
    completed."""
    from nbplane.jobs.progress import ConsoleReporter
    from nbplane.jobs.runner import DeployedIdentity, run_job

    url, token = os.environ.get("NBPLANE_URL"), os.environ.get("NBPLANE_EXECUTION_TOKEN")
    if not url or not token:
        print("run-execution needs NBPLANE_URL and NBPLANE_EXECUTION_TOKEN", file=sys.stderr)
        return 2
    channel = ExecutionChannel(url, token)
    try:
        context = channel.context()
        if context.id != execution_id:
            print(f"this credential is not execution {execution_id}'s", file=sys.stderr)
            return 2
        log = ServerLog(channel, sys.stdout)
        console = Console(file=log, width=120, color_system=None, soft_wrap=True)  # type: ignore[arg-type]
        started = time.monotonic()
        status, reason = JobExecutionStatus.FAILED, None
        try:
            with tempfile.TemporaryDirectory(prefix=f"nbplane-{execution_id[:8]}-") as scratch:
                directory = Path(scratch) / context.job
                unpack(channel.archive(), directory)
                console.print(
                    f"execution {execution_id} of {context.team}/{context.job} "
                    f"version {context.version[:12]}"
                )
                record = run_job(
                    directory,
                    arguments=context.arguments,
                    store=channel,
                    state=channel,
                    settings=Settings(home=Path(scratch), db_url=context.db_url),
                    reporter=ConsoleReporter(console),
                    deployed=DeployedIdentity(context.team, context.job, execution_id),
                )
                if record.status == RunStatus.SUCCEEDED:
                    status = JobExecutionStatus.COMPLETED
                else:
                    reason = (record.error or {}).get("message") or f"the run {record.status}"
        except NbplaneError as exc:
            reason = exc.message
            console.print(f"error: {exc.message}")
        except Exception as exc:  # the record must end whatever happens
            reason = f"nbplane failed: {exc!r}"
            console.print(reason)
        finally:
            console.print(f"{status} in {time.monotonic() - started:.2f}s")
            log.close()
        channel.finish(status, reason)
        return 0 if status == JobExecutionStatus.COMPLETED else 1
    except NbplaneError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        channel.close()
