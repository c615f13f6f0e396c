"""``nbplane job run-execution ID``: what runs where an executor put it (a local process, a
Kubernetes pod). It reads the deployed version from nbplane's database, runs it as the
deployed job (its properties and secrets), streams the log into the database while it runs, and
records the final status itself."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console

from nbplane.control.archive import unpack
from nbplane.errors import NbplaneError
from nbplane.executions.models import ExecutionStatus
from nbplane.jobs.models import RunStatus
from nbplane.settings import get_settings
from nbplane.store import Store, open_store

FLUSH_SECONDS = 0.2


class StoreLog:
    """A text stream that lands in the execution's log in the database every few tenths of a
    second (so it can be followed live), and on our own stdout (so the executor keeps it too)."""

    def __init__(self, store: Store, execution_id: str, echo: TextIO) -> None:
        self.store, self.execution_id, self.echo = store, execution_id, echo
        self._pending: list[str] = []
        self._lock = threading.Lock()
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
            self._save()

    def _save(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        self.store.control.append_log(self.execution_id, text)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._save()


def run_execution(execution_id: str) -> int:
    """Run one queued or just-started execution; the exit code says whether it completed."""
    from nbplane.cli.progress import ConsoleReporter
    from nbplane.jobs.runner import DeployedIdentity, run_job

    settings = get_settings()
    store = open_store(settings.resolved_store_url)
    control = store.control
    try:
        row = control.execution_row(execution_id)
        if ExecutionStatus(row["status"]).final:
            print(f"execution {execution_id} ended already ({row['status']})", file=sys.stderr)
            return 1
        log = StoreLog(store, execution_id, sys.stdout)
        console = Console(file=log, width=120, color_system=None, soft_wrap=True)  # type: ignore[arg-type]
        started = time.monotonic()
        status, reason = ExecutionStatus.FAILED, None
        try:
            with tempfile.TemporaryDirectory(prefix=f"nbplane-{execution_id[:8]}-") as scratch:
                directory = Path(scratch) / row["name"]
                unpack(control.archive(row["job_id"], row["version"]), directory)
                console.print(
                    f"execution {execution_id} of {row['team']}/{row['name']} "
                    f"version {row['version'][:12]}"
                )
                record = run_job(
                    directory,
                    arguments=row["arguments"],
                    store=store,
                    settings=settings,
                    reporter=ConsoleReporter(console),
                    deployed=DeployedIdentity(row["team"], row["name"], execution_id),
                )
                control.set_run(execution_id, record.id)
                if record.status == RunStatus.SUCCEEDED:
                    status = ExecutionStatus.COMPLETED
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
        control.finish_execution(execution_id, status, reason)
        return 0 if status == ExecutionStatus.COMPLETED else 1
    finally:
        store.close()
