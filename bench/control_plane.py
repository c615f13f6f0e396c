"""Time the control plane: how soon a job's first step starts after a request or a due time.

One run starts ``nbplane serve`` on loopback (a fresh ``NBPLANE_HOME``, a SQLite store, a
token) and measures, for a small job of a few notebook steps:

1. On demand: from ``POST .../executions`` until the first step started (its ``started_at``)
   and until the execution completed, with the local executor, and with the Kubernetes executor
   on the loopback test cluster when its binaries are built (``tests/k8s/cluster.py``).
2. Schedules: an every-2-seconds schedule (``*/2 * * * * *``, the most frequent one nbplane
   accepts) deployed for ``--schedule-seconds``,
   then disabled. Each due time must start exactly one execution: duplicates and missed due
   times are counted, and the delay from the due time to the execution's ``created_at`` and to
   its first step's ``started_at`` is reported. Once with one server, once with two replicas
   on the same SQLite database (and on PostgreSQL with ``--postgres-url``).
   With two replicas, the one holding the control lease (which runs the scheduler) is then
   SIGKILLed, and the time until the other holds the lease is reported: the takeover.
3. The baseline without a control plane: ``nbplane job run DIR`` started as a subprocess, once
   on demand and then by a cron-like Python loop every 2 seconds ("crontab + CLI").

The server and this script share one machine, so their timestamps share one clock. A failed
execution, a server that does not start, a duplicate or a missed due time exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Server,
    Summary,
    code_cell,
    free_port,
    kubernetes_namespace,
    kubernetes_unavailable,
    nbplane_command,
    package_version,
    percentile,
    run_timed,
    sqlite_url,
    write_job,
)
from rich.console import Console
from rich.table import Table

TEAM = "bench"
SCHEDULE = "*/2 * * * * *"
PERIOD = 2
"""The most frequent schedule nbplane accepts (every second is refused as a 422)."""
FINAL = ("completed", "failed", "timed_out", "cancelled")
DISABLE_OFFSET = 0.5
"""The schedule is disabled this long after its last due time (half-way between two due
times), so every due time while it was enabled had this long to start its execution, and none
is both due and disabled at once."""


class BenchError(Exception):
    """Something the benchmark needs did not happen; the message says what."""


# --------------------------------------------------------------------------------------------
# The job


def job_cells(steps: int) -> list[dict[str, Any]]:
    """``steps`` small cells tagged ``step``: build a list, sum it, print the sum, ..."""
    cells = [code_cell("build", "rows = [i * i for i in range(1000)]\n", tags=("step",))]
    for index in range(1, steps):
        cells.append(
            code_cell(
                f"step-{index}",
                f"total_{index} = sum(rows) + {index}\nprint('step {index + 1}', total_{index})\n",
                tags=("step",),
            )
        )
    return cells


def export_archive(job: Path, target: Path) -> bytes:
    """The zip ``nbplane job export`` makes of the job, as the control plane takes it."""
    from nbplane.jobs.scaffold import export_job

    export_job(job, target)
    return target.read_bytes()


def instant(text: str) -> float:
    """Seconds since the epoch of an ISO timestamp the API returned."""
    return datetime.fromisoformat(text).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def base_env() -> dict[str, str]:
    """This environment minus variables that would steer nbplane or Python elsewhere."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NBPLANE_", "VIRTUAL_ENV", "PYTHONPATH"))
    }


# --------------------------------------------------------------------------------------------
# A control plane: one or more `nbplane serve` replicas on one database


@dataclass
class Plane:
    label: str
    home: Path
    store_url: str
    token: str
    servers: list[Server]
    urls: list[str]
    executor: str = "local"

    def client(self, replica: int = 0, timeout: float = 120) -> httpx.Client:
        # trust_env=False: loopback only, never through a proxy from the environment.
        return httpx.Client(
            base_url=self.urls[replica],
            timeout=timeout,
            trust_env=False,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def logs(self) -> str:
        return "\n".join(
            f"----- {s.label} log (last lines) -----\n{s.log_tail()}" for s in self.servers
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_plane(
    root: Path,
    label: str,
    store_url: str,
    replicas: int,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> Plane:
    """``replicas`` servers sharing one fresh NBPLANE_HOME and the store; a token for admin."""
    slug = label.replace(" ", "-").replace(",", "")
    home = root / f"home-{slug}"
    apis = home / "apis"  # no notebook APIs: only the control plane is measured
    apis.mkdir(parents=True)
    env = base_env() | {
        "NBPLANE_HOME": str(home),
        "NBPLANE_STORE_URL": store_url,
        **(extra_env or {}),
    }
    made = subprocess.run(
        [*nbplane_command(), "token", "create", f"bench-{uuid.uuid4().hex[:8]}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    token = made.stdout.strip()
    if made.returncode != 0 or not token:
        raise BenchError(
            f"{label}: `nbplane token create` failed (exit {made.returncode}):\n"
            f"{made.stdout}{made.stderr}"
        )
    executor = (extra_env or {}).get("NBPLANE_JOB_EXECUTOR", "local")
    plane = Plane(label, home, store_url, token, [], [], executor)
    for index in range(replicas):
        port = free_port()
        name = f"{label} replica {index + 1}" if replicas > 1 else label
        server = Server(
            name,
            [
                *nbplane_command(),
                "serve",
                "--notebooks-dir",
                str(apis),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            root / f"server-{slug}-{index + 1}.log",
            cwd=home,
        )
        plane.servers.append(server)
        plane.urls.append(f"http://127.0.0.1:{port}")

        def healthy(url: str = plane.urls[-1]) -> bool:
            return httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200

        if not server.wait_until(healthy, timeout):
            code = server.process.poll()
            plane.stop()
            why = f"exited with code {code}" if code is not None else f"not within {timeout:g} s"
            raise BenchError(
                f"{name}: `nbplane serve` did not answer GET /health ({why}); "
                f"its log:\n{server.log_tail()}"
            )
    return plane


class JobApi:
    """One job of the control plane API, over one replica's client."""

    def __init__(self, client: httpx.Client, name: str) -> None:
        self.client, self.name = client, name
        self.path = f"/api/v1/teams/{TEAM}/jobs/{name}"

    def _ok(self, response: httpx.Response, codes: tuple[int, ...], what: str) -> Any:
        if response.status_code not in codes:
            raise BenchError(
                f"{what} job {self.name}: HTTP {response.status_code}: {response.text[:800]}"
            )
        return response.json() if response.content else None

    def create(self, archive: bytes) -> None:
        self._ok(
            self.client.post(f"/api/v1/teams/{TEAM}/jobs", json={"name": self.name}),
            (201,),
            "create",
        )
        self._ok(
            self.client.post(
                f"{self.path}/versions",
                content=archive,
                headers={"content-type": "application/zip"},
            ),
            (200, 201),
            "upload a version of",
        )

    def deploy(self, **body: Any) -> dict[str, Any]:
        return dict(
            self._ok(self.client.put(f"{self.path}/deployment", json=body), (200,), "deploy")
        )

    def update(self, **body: Any) -> dict[str, Any]:
        return dict(
            self._ok(
                self.client.patch(f"{self.path}/deployment", json=body),
                (200,),
                "change the deployment of",
            )
        )

    def execute(self) -> dict[str, Any]:
        return dict(
            self._ok(self.client.post(f"{self.path}/executions", json={}), (201,), "execute")
        )

    def wait(self, execution_id: str, timeout: float) -> dict[str, Any]:
        """The execution once it ended (``?wait=`` long polls, at most 300 s a call)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            record = dict(
                self._ok(
                    self.client.get(
                        f"{self.path}/executions/{execution_id}",
                        params={"wait": max(0.0, min(left, 300.0))},
                    ),
                    (200,),
                    "read an execution of",
                )
            )
            if record["status"] in FINAL:
                return record
            if left <= 0:
                raise BenchError(
                    f"execution {execution_id} of {self.name} still "
                    f"{record['status']} after {timeout:.0f} s"
                )

    def log(self, execution_id: str) -> str:
        response = self.client.get(f"{self.path}/executions/{execution_id}/logs")
        return response.text if response.status_code == 200 else f"(HTTP {response.status_code})"

    def executions(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self._ok(
                self.client.get(
                    f"{self.path}/executions", params={"limit": 500, "offset": len(items)}
                ),
                (200,),
                "list the executions of",
            )
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                return items


def check_execution(api: JobApi, record: dict[str, Any], steps: int) -> None:
    """A completed execution whose steps all succeeded, else its record and log."""
    statuses = [step["status"] for step in record.get("steps", [])]
    if record["status"] == "completed" and statuses == ["succeeded"] * steps:
        return
    raise BenchError(
        f"execution {record['id']} of {api.name}: status {record['status']} "
        f"({record.get('reason')}), steps {statuses}, want {steps} succeeded; its log:\n"
        f"{api.log(record['id'])[-3000:]}"
    )


def first_step_started(record: dict[str, Any]) -> float:
    return min(instant(step["started_at"]) for step in record["steps"])


@dataclass(frozen=True)
class Sample:
    """One execution's moments in seconds, absolute or after its request or due time: created
    (its record; for the baseline, its process spawned), launched (the monitor claimed it and
    handed it to the executor: the record's ``started_at``), first step started, finished; None
    when it did not get there."""

    created: float
    launched: float | None
    first_step: float | None
    finished: float | None

    @classmethod
    def of(cls, record: dict[str, Any], completed: bool) -> Sample:
        """From an execution record of the API (``completed``: its steps all succeeded)."""
        launched = instant(record["started_at"]) if record.get("started_at") else None
        return cls(
            instant(record["created_at"]),
            launched,
            first_step_started(record) if completed else None,
            instant(record["finished_at"]) if completed else None,
        )

    def after(self, start: float) -> Sample:
        def minus(value: float | None) -> float | None:
            return None if value is None else value - start

        return Sample(
            self.created - start, minus(self.launched), minus(self.first_step), minus(self.finished)
        )


def known(values: list[float | None]) -> list[float]:
    return [value for value in values if value is not None]


# --------------------------------------------------------------------------------------------
# 1. On demand


@dataclass
class OnDemand:
    """One row of the on-demand table: seconds from the request to the first step and to the
    end of each timed execution, or why the row was skipped."""

    label: str
    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None

    @property
    def first_step(self) -> list[float]:
        return known([sample.first_step for sample in self.samples])

    @property
    def completed(self) -> list[float]:
        return known([sample.finished for sample in self.samples])


class PlaneTarget:
    """Executions of a deployed job on demand: POST, then wait for the end."""

    def __init__(
        self, row: OnDemand, plane: Plane, archive: bytes, steps: int, timeout: float
    ) -> None:
        self.row, self.plane, self.steps, self.timeout = row, plane, steps, timeout
        self.api = JobApi(plane.client(timeout=timeout + 30), "on-demand")
        self.api.create(archive)
        self.api.deploy()

    def run(self, timed: bool) -> None:
        posted = time.time()
        record = self.api.wait(self.api.execute()["id"], self.timeout)
        check_execution(self.api, record, self.steps)
        if record["executor"] != self.plane.executor:
            raise BenchError(
                f"{self.row.label}: execution {record['id']} ran on the "
                f"{record['executor']!r} executor, want {self.plane.executor!r}"
            )
        if timed:
            self.row.samples.append(Sample.of(record, completed=True).after(posted))

    def close(self) -> None:
        self.api.client.close()


class CliTarget:
    """The baseline: ``nbplane job run DIR`` as a user starts it, timed from the spawn."""

    def __init__(self, row: OnDemand, job: Path, home: Path, steps: int) -> None:
        self.row, self.job, self.home, self.steps = row, job, home, steps
        self.env = base_env() | {
            "NBPLANE_HOME": str(home),
            "NBPLANE_STORE_URL": sqlite_url(home / "nbplane.db"),
        }
        self.count = 0

    def run(self, timed: bool) -> None:
        self.count += 1
        tag = f"on-demand-{self.count}"
        command = [
            *nbplane_command(),
            "job",
            "run",
            str(self.job),
            "--arguments",
            json.dumps({"tag": tag}),
        ]
        spawned = time.time()
        result = run_timed("nbplane job run", command, self.env, cwd=self.home)
        if result.returncode != 0:
            raise BenchError(
                f"`{' '.join(command)}` exited {result.returncode}:\n{result.output[-3000:]}"
            )
        run = cli_runs(self.job, self.home, self.steps)[tag]
        if timed:
            self.row.samples.append(Sample(0.0, 0.0, run[0] - spawned, run[1] - spawned))

    def close(self) -> None:
        pass


def cli_runs(job: Path, home: Path, steps: int) -> dict[str, tuple[float, float]]:
    """``{tag or due argument: (first step started, run finished)}`` of the job's CLI runs,
    read from the run records `nbplane job run` keeps in NBPLANE_HOME's store."""
    from nbplane.store import open_store

    store = open_store(sqlite_url(home / "nbplane.db"))
    try:
        runs = store.list_runs(str(job), limit=100_000)
    finally:
        store.close()
    found: dict[str, tuple[float, float]] = {}
    for run in runs:
        key = run.arguments.get("tag") or run.arguments.get("due")
        started = [step.started_at for step in run.steps if step.started_at is not None]
        if run.status != "succeeded" or len(started) != steps or run.finished_at is None:
            raise BenchError(
                f"`nbplane job run` run {run.id} ({key}): status {run.status}, "
                f"{len(started)} of {steps} steps started; error: {run.error}"
            )
        found[str(key)] = (min(s.timestamp() for s in started), run.finished_at.timestamp())
    return found


# --------------------------------------------------------------------------------------------
# Kubernetes


@contextmanager
def kubernetes_plane(root: Path, timeout: float, console: Console) -> Iterator[Plane]:
    """The loopback cluster, a fresh namespace, and a server using the Kubernetes executor."""
    with kubernetes_namespace(root, console) as (cluster, namespace):
        plane = start_plane(
            root,
            "kubernetes",
            sqlite_url(root / "kubernetes.db"),
            1,
            timeout,
            {
                "NBPLANE_JOB_EXECUTOR": "kubernetes",
                "NBPLANE_KUBECONFIG": str(cluster.kubeconfig),
                "NBPLANE_KUBERNETES_NAMESPACE": namespace,
                # The node stand-in runs the pod's command here: the "image's" Python is this one.
                "NBPLANE_KUBERNETES_PYTHON": sys.executable,
            },
        )
        try:
            yield plane
        finally:
            plane.stop()


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server of ``server_url``, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    name = f"nbplane_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise BenchError(
            f"--postgres-url: cannot create a database for the benchmark: {exc}"
        ) from exc
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------------------------
# 2. Schedules


@dataclass
class ScheduleRun:
    """One row of the schedule table."""

    label: str
    due_expected: int = 0
    executions: int = 0
    duplicates: int = 0
    missed: int = 0
    outside: int = 0
    """Executions for a due time before the schedule was deployed or after it was disabled."""
    failed: int = 0
    samples: list[Sample] = field(default_factory=list)
    """The first execution of each due time, after its due time."""
    problems: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    """The 1-minute load average when the schedule started and when it was disabled."""

    @property
    def to_created(self) -> list[float]:
        return [sample.created for sample in self.samples]

    @property
    def to_first_step(self) -> list[float]:
        return known([sample.first_step for sample in self.samples])


def judge(
    row: ScheduleRun, first_due: float, disabled: float, runs: dict[float, list[Sample]]
) -> None:
    """Fill in the counts and delays from ``{due time: [its executions]}``;
    every PERIOD seconds from ``first_due`` up to ``disabled`` is a due time."""
    expected = {
        round(first_due + k * PERIOD, 3)
        for k in range(int((disabled - first_due) / PERIOD) + 1)
        if first_due + k * PERIOD <= disabled
    }
    last_possible = max(expected)
    row.due_expected = len(expected)
    row.executions = sum(len(found) for found in runs.values())
    row.duplicates = sum(len(found) - 1 for found in runs.values())
    row.missed = len(expected - set(runs))
    row.outside = sum(
        len(found)
        for due, found in runs.items()
        if due < first_due - 0.001 or due > last_possible + 0.001
    )
    for due, found in sorted(runs.items()):
        row.samples.append(found[0].after(due))
        row.failed += sum(sample.first_step is None for sample in found)
    if row.duplicates:
        twice = sorted(iso(due) for due, found in runs.items() if len(found) > 1)
        row.problems.append(
            f"{row.duplicates} duplicate execution(s); due times: {', '.join(twice[:10])}"
        )
    if row.missed:
        gone = sorted(iso(due) for due in expected - set(runs))
        row.problems.append(f"{row.missed} missed due time(s): {', '.join(gone[:10])}")
    if row.outside:
        row.problems.append(
            f"{row.outside} execution(s) for a due time outside the window the schedule was enabled"
        )


def schedule_run(
    plane: Plane,
    label: str,
    archive: bytes,
    steps: int,
    seconds: float,
    timeout: float,
    console: Console,
) -> ScheduleRun:
    """Deploy an every-2-seconds schedule on replica 1, disable it on the last replica after
    ``seconds``, wait for its executions to end and judge them."""
    row = ScheduleRun(label)
    name = f"every-2s-{uuid.uuid4().hex[:6]}"
    with plane.client(0) as first, plane.client(len(plane.urls) - 1) as last:
        deployer, reader = JobApi(first, name), JobApi(last, name)
        deployer.create(archive)
        deployment = deployer.deploy(schedule=SCHEDULE)
        if not deployment.get("next_run_at"):
            raise BenchError(f"{label}: the deployment has no next_run_at: {deployment}")
        first_due = instant(deployment["next_run_at"])
        console.print(f"[dim]{label}: every-2-seconds schedule for {seconds:.0f} s[/dim]")
        load = os.getloadavg()[0]
        time.sleep(max(0.0, first_due + seconds - 1 + DISABLE_OFFSET - time.time()))
        disabled_at = time.time()
        reader.update(enabled=False)
        row.load = (load, os.getloadavg()[0])
        deadline = time.monotonic() + timeout
        while True:
            items = [item for item in reader.executions() if item["started_by"] == "schedule"]
            if all(item["status"] in FINAL for item in items):
                break
            if time.monotonic() > deadline:
                left = sum(item["status"] not in FINAL for item in items)
                raise BenchError(
                    f"{label}: {left} scheduled execution(s) still running "
                    f"{timeout:.0f} s after the schedule was disabled"
                )
            time.sleep(0.5)
        runs: dict[float, list[Sample]] = {}
        for item in items:
            record = reader.wait(item["id"], 0)  # with its steps
            due = round(instant(record["scheduled_for"]), 3)
            completed = True
            try:
                check_execution(reader, record, steps)
            except BenchError as exc:
                completed = False
                if len(row.problems) < 3:
                    row.problems.append(str(exc))
            runs.setdefault(due, []).append(Sample.of(record, completed))
        judge(row, first_due, disabled_at, runs)
        if row.failed:
            row.problems.append(f"{row.failed} scheduled execution(s) did not complete")
    return row


def measure_takeover(plane: Plane, console: Console, timeout: float = 30) -> float:
    """SIGKILL the replica holding the control lease (no release) and time until another
    replica holds it."""
    from nbplane._time import now
    from nbplane.platform.lease import CONTROL_LEASE
    from nbplane.store import open_store

    store = open_store(plane.store_url)
    try:
        held = store.leases.holder(CONTROL_LEASE, now())
        holder = next((s for s in plane.servers if held and f":{s.pid}:" in held), None)
        if holder is None:
            raise BenchError(f"{plane.label}: no replica holds the control lease ({held})")
        holder.process.kill()
        killed = time.monotonic()
        while time.monotonic() - killed < timeout:
            taker = store.leases.holder(CONTROL_LEASE, now())
            if taker not in (None, held):
                took = time.monotonic() - killed
                console.print(
                    f"{plane.label}: the lease holder SIGKILLed, another replica held the "
                    f"lease {took:.1f} s later",
                    highlight=False,
                )
                return took
            time.sleep(0.05)
    finally:
        store.close()
    raise BenchError(f"{plane.label}: no replica took the lease over within {timeout:g} s")


def crontab_baseline(
    job: Path, home: Path, steps: int, seconds: float, timeout: float, console: Console
) -> ScheduleRun:
    """What a user without a control plane does: start ``nbplane job run DIR`` every PERIOD
    seconds, like cron would (a Python loop standing in for crond)."""
    row = ScheduleRun("baseline: crontab + `nbplane job run`")
    env = base_env() | {
        "NBPLANE_HOME": str(home),
        "NBPLANE_STORE_URL": sqlite_url(home / "nbplane.db"),
    }
    logs = home / "cron-logs"
    logs.mkdir(exist_ok=True)
    first_due = float(int(time.time()) + 1)
    started: list[tuple[float, float, subprocess.Popen[bytes], Path]] = []
    console.print(f"[dim]baseline: `nbplane job run` every {PERIOD} s for {seconds:.0f} s[/dim]")
    load = os.getloadavg()[0]
    due = first_due
    while due < first_due + seconds:
        time.sleep(max(0.0, due - time.time()))
        log = logs / f"{int(due)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    *nbplane_command(),
                    "job",
                    "run",
                    str(job),
                    "--arguments",
                    json.dumps({"due": iso(due)}),
                ],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append((due, time.time(), process, log))
        due += PERIOD
    row.load = (load, os.getloadavg()[0])
    deadline = time.monotonic() + timeout
    for due, _, process, log in started:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for _, _, other, _ in started:
                other.kill()
            raise BenchError(
                f"baseline: `nbplane job run` due at {iso(due)} still running after {timeout:.0f} s"
            ) from None
        if process.returncode != 0:
            text = log.read_text(errors="replace")[-3000:]
            raise BenchError(
                f"baseline: `nbplane job run` due at {iso(due)} exited "
                f"{process.returncode}:\n{text}"
            )
    recorded = cli_runs(job, home, steps)
    runs: dict[float, list[Sample]] = {}
    for due, spawned, _, _ in started:
        run = recorded.get(iso(due))
        runs.setdefault(round(due, 3), []).append(
            Sample(spawned, spawned, run[0] if run else None, run[1] if run else None)
        )
    judge(row, first_due, first_due + seconds - 1 + DISABLE_OFFSET, runs)
    return row


# --------------------------------------------------------------------------------------------
# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if abs(seconds) < 0.1 else f"{seconds * 1000:.0f}"


def spread(values: list[float]) -> list[str]:
    """median, p90, min, max in ms."""
    if not values:
        return ["-"] * 4
    summary = Summary.of(values)
    return [ms(summary.median), ms(percentile(values, 0.9)), ms(summary.low), ms(summary.high)]


def report_on_demand(console: Console, rows: list[OnDemand], args: argparse.Namespace) -> None:
    table = Table(
        title=f"On demand: a {args.steps}-step notebook job, from the request until "
        f"its first step started and until it completed ({args.runs} runs each, "
        f"after {args.warmup} warm-up; ms)"
    )
    table.add_column("how it starts")
    for column in (
        "first step median",
        "p90",
        "min",
        "max",
        "completed median",
        "p90 ",
        "min ",
        "max ",
        "runs",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        if row.skipped:
            table.add_row(row.label, *["-"] * 8, "skipped")
            continue
        table.add_row(
            row.label, *spread(row.first_step), *spread(row.completed), str(len(row.first_step))
        )
    console.print(table)
    for row in rows:
        if row.skipped:
            console.print(f"[yellow]{row.label}: skipped: {row.skipped}[/yellow]", highlight=False)
    console.print(
        "[dim]Control plane rows time from just before `POST .../executions` until the "
        "first step's `started_at` and the execution's `finished_at`; the baseline row "
        "times from just before the `nbplane job run` process is spawned until its run "
        "record's first step `started_at` and `finished_at`.[/dim]"
    )
    if any("kubernetes" in row.label and row.samples for row in rows):
        console.print(
            "[dim]Kubernetes: a Job on the loopback test cluster (etcd, kube-apiserver, "
            "kube-controller-manager, and tests/k8s/node.py standing in for the "
            "scheduler and kubelet, which runs the pod's command as a local process): "
            "no image pull, no container runtime. A real cluster adds those to "
            '"first step".[/dim]'
        )
    baseline = next((r for r in rows if r.label.startswith("baseline") and r.first_step), None)
    ours = [r for r in rows if not r.label.startswith("baseline") and r.first_step]
    if baseline and ours:
        ratios = Table(
            title="On demand, ratios: control plane median / baseline median "
            "(>1 means the control plane adds time to what the CLI takes)"
        )
        ratios.add_column("control plane")
        ratios.add_column("first step", justify="right")
        ratios.add_column("completed", justify="right")
        ratios.add_column("first step, difference ms", justify="right")
        for row in ours:
            first = Summary.of(row.first_step).median
            base = Summary.of(baseline.first_step).median
            done = Summary.of(row.completed).median / Summary.of(baseline.completed).median
            ratios.add_row(
                row.label, f"{first / base:.2f}x", f"{done:.2f}x", f"{(first - base) * 1000:+.0f}"
            )
        console.print(ratios)


def report_schedules(console: Console, rows: list[ScheduleRun], args: argparse.Namespace) -> None:
    table = Table(
        title=f"Schedule accuracy: `{SCHEDULE}` for {args.schedule_seconds:.0f} s; "
        "delays from each due time (ms)"
    )
    table.add_column("setup")
    for column in (
        "due times",
        "executions",
        "duplicates",
        "missed",
        "failed",
        "→ created median",
        "p90",
        "max",
        "→ first step median",
        "p90 ",
        "max ",
        "load",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        created = spread(row.to_created)
        first = spread(row.to_first_step)
        table.add_row(
            row.label,
            str(row.due_expected),
            str(row.executions),
            str(row.duplicates),
            str(row.missed),
            str(row.failed),
            created[0],
            created[1],
            created[3],
            first[0],
            first[1],
            first[3],
            f"{row.load[0]:.1f}→{row.load[1]:.1f}",
        )
    console.print(table)
    console.print(
        f"[dim]due times: every {PERIOD} s from the deployment's first `next_run_at` "
        f"until the PATCH that disabled the schedule, sent {DISABLE_OFFSET} s after the "
        "last one; → created: to the execution's `created_at` (for the baseline: to "
        "the moment its process was spawned); → first step: to the first step's "
        f"`started_at`; load: the 1-minute load average ({os.cpu_count()} CPUs) when "
        "the schedule started and ended.[/dim]"
    )
    baseline = next((r for r in rows if r.label.startswith("baseline") and r.to_first_step), None)
    ours = [r for r in rows if not r.label.startswith("baseline") and r.to_first_step]
    if baseline and ours:
        ratios = Table(
            title="Schedules, ratios: control plane / crontab + CLI baseline, due time "
            "→ first step (>1 means the control plane starts later)"
        )
        ratios.add_column("control plane")
        for column in ("median", "p90", "max", "median difference ms"):
            ratios.add_column(column, justify="right")
        base = baseline.to_first_step
        for row in ours:
            mine = row.to_first_step
            ratios.add_row(
                row.label,
                f"{Summary.of(mine).median / Summary.of(base).median:.2f}x",
                f"{percentile(mine, 0.9) / percentile(base, 0.9):.2f}x",
                f"{max(mine) / max(base):.2f}x",
                f"{(Summary.of(mine).median - Summary.of(base).median) * 1000:+.0f}",
            )
        console.print(ratios)
    for row in rows:
        if row.label.startswith("baseline"):
            continue
        met = not (row.duplicates or row.missed or row.outside or row.failed)
        verdict = "[green]MET[/green]" if met else "[red]NOT MET[/red]"
        console.print(f"exactly one execution per due time, {row.label}: {verdict}")
        for problem in row.problems:
            console.print(f"  [red]{problem}[/red]", highlight=False)


def report_breakdown(
    console: Console, on_demand: list[OnDemand], schedules: list[ScheduleRun]
) -> None:
    """Medians of each stretch between an execution's moments, per row."""
    table = Table(title="Where the time goes: medians of each stretch (ms)")
    table.add_column("row")
    for column in (
        "request or due → created",
        "created → handed to the executor",
        "handed over → first step",
        "first step → finished",
    ):
        table.add_column(column, justify="right")

    def median(values: list[float | None]) -> str:
        found = known(values)
        return ms(Summary.of(found).median) if found else "-"

    def gap(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else end - start

    rows = [(f"on demand, {row.label}", row.samples) for row in on_demand if row.samples]
    rows += [(f"schedule, {row.label}", row.samples) for row in schedules if row.samples]
    for label, samples in rows:
        baseline = "baseline" in label
        table.add_row(
            label,
            "-" if baseline else median([s.created for s in samples]),
            "-" if baseline else median([gap(s.created, s.launched) for s in samples]),
            median([gap(s.launched, s.first_step) for s in samples]),
            median([gap(s.first_step, s.finished) for s in samples]),
        )
    console.print(table)
    console.print(
        "[dim]A baseline's process is spawned at its start, so its \"handed over → first "
        'step" is the time `nbplane job run` takes to start up and reach its first '
        "step; for the scheduled baseline that start is the due time plus the spawn "
        "delay in the schedule table.[/dim]"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=10, help="timed on-demand executions per row (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed on-demand executions per row first (default 1)",
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="notebook steps of the job (default 3)"
    )
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        default=120,
        help="how long each every-2-seconds schedule stays enabled (default 120; "
        "a few seconds make a smoke run)",
    )
    parser.add_argument(
        "--no-kubernetes", action="store_true", help="leave out the Kubernetes executor row"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the `nbplane job run` (crontab + CLI) baseline",
    )
    parser.add_argument(
        "--no-replicas", action="store_true", help="leave out the schedule run on two replicas"
    )
    parser.add_argument(
        "--postgres-url",
        help="also run the two replicas on PostgreSQL: the SQLAlchemy URL of a "
        "server and a user allowed to create databases, e.g. "
        "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres; "
        "the script creates a database of its own there and drops it after",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180,
        help="seconds one execution may take before the run fails (default 180)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60,
        help="seconds a server may take to answer /health (default 60)",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.steps < 1:
        parser.error("--runs and --steps must be at least 1, --warmup at least 0")
    if args.schedule_seconds < 2:
        parser.error("--schedule-seconds must be at least 2")
    return args


def measure_on_demand(
    args: argparse.Namespace,
    root: Path,
    local: Plane,
    archive: bytes,
    cli_job: Path,
    cli_home: Path,
    started: list[Plane],
    console: Console,
) -> tuple[list[OnDemand], list[str]]:
    """Phase 1: the rows take turns within each round, so a change in machine load hits them
    alike. Returns the rows and what failed."""
    rows = [
        OnDemand("control plane, local executor"),
        OnDemand("control plane, kubernetes executor"),
    ]
    if not args.no_baseline:
        rows.append(OnDemand("baseline: `nbplane job run DIR`"))
    targets: list[PlaneTarget | CliTarget] = []
    with ExitStack() as phase:
        try:
            targets.append(PlaneTarget(rows[0], local, archive, args.steps, args.timeout))
            rows[1].skipped = kubernetes_unavailable(
                args.no_kubernetes,
                "nbplane.deployments.executors.kubernetes",
                "the Kubernetes job executor (src/nbplane/deployments/executors/kubernetes.py)",
            )
            if rows[1].skipped is None:
                kube = phase.enter_context(kubernetes_plane(root, args.start_timeout, console))
                started.append(kube)
                targets.append(PlaneTarget(rows[1], kube, archive, args.steps, args.timeout))
            if not args.no_baseline:
                targets.append(CliTarget(rows[2], cli_job, cli_home, args.steps))
            console.print(
                f"[dim]on demand: {args.warmup} warm-up and {args.runs} timed rounds "
                f"of {len(targets)} rows[/dim]"
            )
            for index in range(args.warmup + args.runs):
                for target in targets:
                    target.run(timed=index >= args.warmup)
        except BenchError as exc:
            return rows, [f"on demand: {exc}"]
        except Exception as exc:  # the cluster failing to start, say
            return rows, [f"on demand: {type(exc).__name__}: {exc}"]
        finally:
            for target in targets:
                target.close()
    return rows, []


def main() -> int:
    args = parse_args()
    # Piped output would be 80 columns wide, too narrow for the tables.
    console = Console(width=None if sys.stdout.isatty() else 190)
    version = package_version(Path(sys.executable), "nbplane")
    console.print(
        f"[dim]nbplane {version}; {os.cpu_count()} CPUs; {load_average()} at the start[/dim]"
    )
    schedules: list[ScheduleRun] = []
    started: list[Plane] = []
    with tempfile.TemporaryDirectory(prefix="nbplane-bench-control-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        job = root / "job"
        write_job(job, job_cells(args.steps))
        archive = export_archive(job, root / "job.zip")
        cli_job = root / "cli-job"  # the baseline's own copy: runs leave nothing in the other
        shutil.copytree(job, cli_job)
        cli_home = root / "home-cli"
        cli_home.mkdir()

        def start(label: str, store_url: str, replicas: int) -> Plane:
            plane = start_plane(root, label, store_url, replicas, args.start_timeout)
            started.append(plane)
            stack.callback(plane.stop)
            return plane

        try:
            local = start("local", sqlite_url(root / "local.db"), 1)
        except BenchError as exc:
            console.print("[red]FAILED:[/red]", end=" ")
            console.print(str(exc), highlight=False, markup=False)
            return 1

        on_demand, failures = measure_on_demand(
            args, root, local, archive, cli_job, cli_home, started, console
        )

        setups: list[tuple[str, str | None, int]] = [("1 server, SQLite", None, 1)]
        if not args.no_replicas:
            setups.append(("2 replicas, SQLite", sqlite_url(root / "replicas.db"), 2))
            if args.postgres_url:
                setups.append(("2 replicas, PostgreSQL", args.postgres_url, 2))
        for label, store_url, replicas in setups:
            try:
                if store_url is not None and "PostgreSQL" in label:
                    store_url = stack.enter_context(postgres_database(store_url))
                plane = local if store_url is None else start(label, store_url, replicas)
                schedules.append(
                    schedule_run(
                        plane,
                        label,
                        archive,
                        args.steps,
                        args.schedule_seconds,
                        args.timeout,
                        console,
                    )
                )
                if replicas > 1:
                    measure_takeover(plane, console)
                if plane is not local:
                    plane.stop()
            except BenchError as exc:
                failures.append(f"schedule, {label}: {exc}")
        if not args.no_baseline:
            try:
                schedules.append(
                    crontab_baseline(
                        cli_job, cli_home, args.steps, args.schedule_seconds, args.timeout, console
                    )
                )
            except BenchError as exc:
                failures.append(f"schedule, baseline: {exc}")

        report_on_demand(console, on_demand, args)
        if schedules:
            report_schedules(console, schedules, args)
        report_breakdown(console, on_demand, schedules)
        console.print(
            f"[dim]{os.cpu_count()} CPUs; {load_average()} at the end (other "
            "work on this machine shows in the figures)[/dim]"
        )
        failures += [
            f"schedule, {row.label}: " + "; ".join(row.problems)
            for row in schedules
            if row.problems
        ]
        if failures:
            console.print("\n[red]FAILED:[/red]")
            for failure in failures:
                console.print(f"- {failure}", highlight=False, markup=False)
            for plane in started:
                console.print(plane.logs(), highlight=False, markup=False)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
