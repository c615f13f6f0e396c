"""Local job runs started from JupyterLab: ``python -m nbplane job run`` in a subprocess, so a
run never blocks or crashes the Jupyter server, followed through the run records it writes.

The subprocess is the same command a person types; its output goes to a log file that the
front end reads from an offset while it grows. Its run record is the first new record of the
job's directory in nbplane's store after the start (one run per directory at a time is allowed,
so nothing else from this server can take it); the steps come from that record as each one
ends, the step after the last recorded one is the running one.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nbplane._time import now
from nbplane.errors import Conflict, InvalidInput, NotFound
from nbplane.jobs.definition import Job, Step, load_job
from nbplane.jobs.history import run_page
from nbplane.jobs.models import DescribeRun, RunStatus, StepStatus
from nbplane.platform import processes
from nbplane.settings import get_settings
from nbplane.store import Store, open_store

FAILURES_LOOKED_AT = 20
"""Runs read back for the last failure: a failure older than that is no longer marked."""
LOG_CHUNK = 1 << 20
"""The most log bytes one read hands out; the front end asks again from the new offset."""
STOP_GRACE_SECONDS = 10.0
CANCEL_MESSAGE = "cancelled from JupyterLab"
PLAIN_OUTPUT = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "TTY_COMPATIBLE": "0"}
"""The subprocess writes a log, not a terminal: the CLI's plain output (no colours, no box
drawing, no wrapping, no hints with server paths), each line as soon as it is written."""


def inside_root(root: Path, value: str, field: str = "directory") -> Path:
    """``value`` (relative to the Jupyter root, as the file browser shows paths) as an absolute
    path, refused when it leads outside the root."""
    root = root.resolve()
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise InvalidInput(
            f"{field} {value!r} is outside the Jupyter root directory", field=field, value=value
        )
    return path


def describe_steps(job: Job) -> list[dict[str, Any]]:
    """The job's steps in run order, located so the front end can number its cells."""
    return [_step_location(step) for step in job.steps]


def _step_location(step: Step) -> dict[str, Any]:
    kind = "notebook" if step.notebook else "sql" if step.is_sql else "python"
    return {
        "order": step.index + 1,
        "name": step.name,
        "file": step.file,
        "kind": kind,
        "cell_index": _cell_index(step.cell_number),
        "cell_id": step.cell_id,
        "sql": step.is_sql,
    }


@dataclass
class LocalRun:
    """One ``nbplane job run`` subprocess and what is known of it so far."""

    id: str
    directory: Path
    path: str
    steps: list[Step]
    process: subprocess.Popen[bytes]
    log: Path
    baseline: int
    created_at: datetime = field(default_factory=now)
    record_id: int | None = None
    cancelled: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalRuns:
    """The runs this Jupyter server started; they outlive page reloads, not the server."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.logs = get_settings().home / "jupyter-runs"
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()
        self._starting = threading.Lock()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(get_settings().resolved_store_url)
            return self._store

    def start(
        self,
        path: str,
        *,
        arguments: dict[str, Any],
        resume: bool,
        from_step: str | None,
    ) -> LocalRun:
        """Check the job, then start its run; a directory runs once at a time."""
        directory = inside_root(self.root, path)
        job = load_job(directory)
        if from_step is not None:
            job.find_step(from_step)
        with self._starting:  # two starts of one job at once: one of them is refused
            if any(run.alive for run in self.find(path)):
                raise Conflict(
                    f"{path} is running already; wait for it or cancel it", field="directory"
                )
            return self._start(job, arguments=arguments, resume=resume, from_step=from_step)

    def _start(
        self, job: Job, *, arguments: dict[str, Any], resume: bool, from_step: str | None
    ) -> LocalRun:
        known = self.store.list_runs(str(job.directory), limit=1)
        command = [sys.executable, "-m", "nbplane", "job", "run", str(job.directory)]
        command += ["--arguments", json.dumps(arguments)]
        if resume:
            command.append("--resume")
        if from_step is not None:
            command += ["--from-step", from_step]
        key = uuid.uuid4().hex
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{key}.log"
        environment = {**os.environ, **PLAIN_OUTPUT}
        environment.pop("FORCE_COLOR", None)  # Jupyter's own may set it: never a terminal here
        with log.open("wb") as output:  # its own session: a cancel stops nothing of the server
            process = processes.start(
                command, cwd=self.root, environment=environment, output=output.fileno()
            )
        run = LocalRun(
            id=key,
            directory=job.directory,
            path=str(job.directory.relative_to(self.root)),
            steps=list(job.steps),
            process=process,
            log=log,
            baseline=known[0].id if known else 0,
        )
        with self._lock:
            self._runs[key] = run
        return run

    def get(self, key: str) -> LocalRun:
        with self._lock:
            run = self._runs.get(key)
        if run is None:
            raise NotFound(f"no run {key!r} was started from this Jupyter server", field="id")
        return run

    def find(self, path: str | None) -> list[LocalRun]:
        """Newest first; only those of ``path`` when given."""
        directory = inside_root(self.root, path) if path is not None else None
        with self._lock:
            runs = list(self._runs.values())
        runs = [run for run in runs if directory is None or run.directory == directory]
        return sorted(runs, key=lambda run: run.created_at, reverse=True)

    def cancel(self, key: str) -> LocalRun:
        """Stop the subprocess (its whole process group) and close its record as cancelled."""
        run = self.get(key)
        if not run.alive:
            return run
        processes.terminate_blocking(
            run.process.pid,
            ended=lambda: run.process.poll() is not None,
            grace=STOP_GRACE_SECONDS,
        )
        run.process.wait()
        killed = run.process.returncode is not None and run.process.returncode < 0
        run.cancelled = killed  # not when it ended by itself just before
        record = self._record(run)  # may close it as "process died" first: it was cancelled
        if killed and record is not None:
            self.store.finish_run(record.id, RunStatus.CANCELLED, {"message": CANCEL_MESSAGE}, {})
        return run

    def describe(self, run: LocalRun) -> dict[str, Any]:
        """The run as the front end shows it: status, each step's progress, where it failed."""
        alive = run.alive  # before the record: a run that ends in between reads as ended
        record = self._record(run)
        if run.cancelled and not alive:
            status = "cancelled"
        elif record is None:
            status = "queued" if alive else "failed"
        elif alive:  # final only once the process is gone, with all of its log written
            status = "running"
        else:
            status = str(record.status)
        return {
            "id": run.id,
            "directory": run.path,
            "status": status,
            "run_id": record.id if record else None,
            "run_number": record.number if record else None,
            "created_at": run.created_at.isoformat(),
            "finished_at": _finished_at(record),
            "steps": _steps(run, record, status),
            "error": _error(run, record, status),
            "log_size": run.log.stat().st_size if run.log.exists() else 0,
        }

    def outputs(self, run: LocalRun) -> dict[str, Any]:
        """What each notebook step cell of the run showed, for the front end to put into the
        open notebook's cells as running them would: nbformat outputs, and the step's number
        (``order``) as their execution count, as in the run's executed notebooks."""
        record = self._recorded(run)
        return {
            "run_number": record.number,
            "steps": [
                {
                    "order": step.position + 1,
                    "file": step.file,
                    "cell_index": _cell_index(step.cell_number),
                    "cell_id": step.cell_id,
                    "status": str(step.status),
                    "outputs": step.outputs,
                }
                for step in record.steps
                if step.cell_number is not None
                and step.status in (StepStatus.SUCCEEDED, StepStatus.FAILED)
            ],
        }

    def page(self, run: LocalRun) -> str:
        """The run's executed notebooks as one HTML page (``nbplane job show-run --html``)."""
        record = self._recorded(run)
        return run_page(run.directory, record, self.store.run_notebooks(record.id))

    def last_failure(self, path: str) -> dict[str, Any] | None:
        """Where the job in ``path`` last failed, from its run records, so a failing cell stays
        marked after a page reload or a server restart: the newest failed step, unless a later
        run passed that step; None when there is none."""
        directory = inside_root(self.root, path)
        passed: set[str] = set()
        for record in self.store.list_runs(str(directory), limit=FAILURES_LOOKED_AT):
            for step in record.steps:
                key = step.cell_id or step.name
                if step.status == StepStatus.FAILED and step.error and key not in passed:
                    return {**_failure_fields(step.error), "run_number": record.number}
            passed |= {
                step.cell_id or step.name
                for step in record.steps
                if step.status == StepStatus.SUCCEEDED
            }
        return None

    def read_log(self, run: LocalRun, offset: int) -> tuple[str, int]:
        """The log from byte ``offset``, cut before a character still being written."""
        with run.log.open("rb") as file:
            file.seek(offset)
            data = file.read(LOG_CHUNK)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(data, final=False)
        pending, _ = decoder.getstate()
        return text, offset + len(data) - len(pending)

    def close(self) -> None:
        """At server shutdown: stop the runs still going, so none is left behind, and drop
        their logs (the run records keep what happened)."""
        for run in self.find(None):
            if run.alive:
                self.cancel(run.id)
            run.log.unlink(missing_ok=True)
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _recorded(self, run: LocalRun) -> DescribeRun:
        record = self._record(run)
        if record is None:
            raise NotFound(f"run {run.id!r} has no record yet: it has not started", field="id")
        return record

    def _record(self, run: LocalRun) -> DescribeRun | None:
        """The run's record once the subprocess has written it."""
        if run.record_id is not None:
            return self.store.get_run(str(run.directory), run.record_id)
        newer = [
            record
            for record in self.store.list_runs(str(run.directory), limit=20)
            if record.id > run.baseline
        ]
        if not newer:
            return None
        record = min(newer, key=lambda found: found.id)
        run.record_id = record.id
        return record


def _finished_at(record: DescribeRun | None) -> str | None:
    if record is not None and record.finished_at is not None:
        return record.finished_at.isoformat()
    return None


def _steps(run: LocalRun, record: DescribeRun | None, status: str) -> list[dict[str, Any]]:
    recorded = {step.position: step for step in record.steps} if record else {}
    running = status == "running"
    steps = []
    for step in run.steps:
        done = recorded.get(step.index)
        state, started, finished = "pending", None, None
        if done is not None:
            state = str(done.status)
            if done.started_at is not None:
                started = done.started_at.isoformat()
                finished = (done.started_at + timedelta(seconds=done.duration or 0)).isoformat()
        elif running:
            state, running = "running", False  # the first step without a record runs now
        elif status in ("cancelled", "failed"):
            state = str(StepStatus.NOT_RUN)
        steps.append(
            {
                **_step_location(step),
                "status": state,
                "reason": done.reason if done else None,
                "started_at": started,
                "finished_at": finished,
            }
        )
    return steps


def _error(run: LocalRun, record: DescribeRun | None, status: str) -> dict[str, Any] | None:
    """Where and why the run failed: the failing cell (0-based index) and line, the user's
    traceback; a run that never got a record says what its output said last."""
    if status != "failed":
        return None
    failed = next(
        (step for step in (record.steps if record else []) if step.status == StepStatus.FAILED),
        None,
    )
    error = (failed.error if failed else None) or (record.error if record else None)
    if error is None:
        tail = run.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        return {"message": "\n".join(tail) or "the run ended before it started"}
    return _failure_fields(error)


def _cell_index(number: object) -> int | None:
    """A cell's 0-based position among all the notebook's cells, as the front end indexes
    them, from the 1-based number steps and records keep (JupyterLab's count of its cells)."""
    return number - 1 if isinstance(number, int) else None


def _failure_fields(error: dict[str, Any]) -> dict[str, Any]:
    """A step's recorded error as the front end marks it, at its cell."""
    return {
        "step": error.get("step"),
        "file": error.get("file"),
        "cell_index": _cell_index(error.get("cell")),
        "cell_id": error.get("cell_id"),
        "line": error.get("line"),
        "message": error.get("message"),
        "summary": error.get("summary"),
        "traceback": error.get("traceback"),
    }
