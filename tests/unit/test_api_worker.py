"""The notebook API's execution service and worker in-process, on
:class:`nbplane.testing.FakeEngine`: submit -> run -> stored outcome, failures in words, the
output checked against the contract, cancel, timeout, and the queue behind a busy worker. The
same flows on real kernels: tests/integration/test_server.py and test_engines.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from nbplane._time import now
from nbplane.apis import worker as worker_module
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.models import HOPS, DescribeExecution, ExecutionStatus, ListExecutionsQuery
from nbplane.apis.service import ExecutionService
from nbplane.apis.worker import Worker
from nbplane.auth.models import DescribeCaller
from nbplane.errors import StoreError
from nbplane.platform.metrics import Metrics
from nbplane.store import Store, open_store
from nbplane.store.apis import ExecutionStore
from nbplane.store.notify import LISTENER_NAME, Signal
from nbplane.testing import FakeEngine, Plan
from tests.integration.api_notebooks import NUMBER_IN, TimedEngine, write_api

ALICE = DescribeCaller(user="alice", admin=False, teams=["sales"])
DOUBLE_OUT = {"type": "object", "required": ["y"], "properties": {"y": {"type": "number"}}}


@dataclass
class Apis:
    store: Store
    catalog: ApiCatalog
    engine: FakeEngine
    cache: Path

    def run(self, steps: Callable[[ExecutionService], Awaitable[Any]], **worker: Any) -> Any:
        """Run ``steps`` with an execution service whose worker runs on the fake engine."""

        async def main() -> Any:
            running = Worker(self.store, self.catalog, **{"poll_interval": 0.05, **worker})
            await running.start()
            try:
                return await steps(ExecutionService(self.store, self.catalog, running, self.cache))
            finally:
                await running.stop()  # at once: a stop in the turn an execution ends is kept

        return asyncio.run(main())


@pytest.fixture
def apis(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Apis]:
    """Two APIs on the store; every engine a worker asks for is one fake engine."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    write_api(
        notebooks,
        "double",
        [("x = 1", ["parameters"]), "y = 2 * x"],
        {"input": NUMBER_IN, "output": DOUBLE_OUT},
    )
    write_api(
        notebooks,
        "slow",
        [("x = 1", ["parameters"]), "pass"],
        {"input": NUMBER_IN, "output": {}, "timeout": 0.2},
    )
    engine = TimedEngine()
    shared = SimpleNamespace(for_worker=lambda pool_size: engine)
    monkeypatch.setattr(worker_module, "ENGINES", SimpleNamespace(load=lambda name: shared))
    monkeypatch.setenv("NBPLANE_HOME", str(tmp_path / "home"))
    store = open_store(store_url)
    yield Apis(store, ApiCatalog(notebooks), engine, tmp_path / "cache")
    store.close()


def call(apis: Apis, notebook: str, parameters: dict[str, Any]) -> DescribeExecution:
    async def steps(service: ExecutionService) -> DescribeExecution:
        submitted = await service.submit(notebook, parameters, ALICE)
        return await service.wait(submitted.id, 10, ALICE)

    result: DescribeExecution = apis.run(steps)
    return result


def test_an_execution_runs_on_the_engine_and_its_outcome_is_stored(apis: Apis) -> None:
    apis.engine.plan(Plan.succeed({"y": 4}))
    done = call(apis, "double", {"x": 2})
    assert (done.status, done.output, done.reason) == (ExecutionStatus.COMPLETED, {"y": 4}, None)
    [request] = apis.engine.requests
    assert request.key.startswith("double@") and request.inject_after == 0
    assert '"parameters": {"x": 2}' in request.parameters_source
    stored = apis.store.executions.get(done.id)
    assert stored is not None and stored.status == ExecutionStatus.COMPLETED
    assert stored.output == {"y": 4} and stored.created_by == "alice"
    notebook = json.loads(apis.store.executions.artifact(done.id, "ipynb") or "{}")
    assert notebook["metadata"]["nbplane"] == {"engine": "fake"}


def test_the_worker_counts_ended_executions_and_their_duration(apis: Apis) -> None:
    """Into the metrics it is given, by final status only (no notebook names)."""
    metrics = Metrics()
    apis.engine.plan(Plan.succeed({"y": 4}), Plan.fail("bad x"), Plan.succeed({"y": 2}))

    async def steps(service: ExecutionService) -> None:
        for x in (2, 3, 1):
            submitted = await service.submit("double", {"x": x}, ALICE)
            await service.wait(submitted.id, 10, ALICE)

    apis.run(steps, metrics=metrics)
    value = metrics.registry.get_sample_value
    assert value("nbplane_api_executions_total", {"status": "completed"}) == 2
    assert value("nbplane_api_executions_total", {"status": "failed"}) == 1
    assert value("nbplane_api_execution_duration_seconds_count", {"status": "completed"}) == 2
    assert (value("nbplane_api_execution_duration_seconds_sum", {"status": "failed"}) or -1) >= 0
    assert "double" not in generate_latest(metrics.registry).decode()


def test_an_exception_in_the_notebook_fails_the_execution_in_words(apis: Apis) -> None:
    apis.engine.plan(Plan.fail("bad x 2"))
    failed = call(apis, "double", {"x": 2})
    assert failed.status == ExecutionStatus.FAILED
    assert failed.reason == "exception in cell 2: FakeError: bad x 2"
    assert failed.error is not None and failed.error["ename"] == "FakeError"


def test_an_output_outside_the_contract_fails_the_execution(apis: Apis) -> None:
    apis.engine.plan(Plan.succeed({"y": "not a number"}))
    failed = call(apis, "double", {"x": 2})
    assert failed.status == ExecutionStatus.FAILED
    assert failed.reason is not None and failed.reason.startswith("output schema: ")


def test_an_engine_that_refuses_fails_the_execution(apis: Apis) -> None:
    apis.engine.plan(Plan.refuse("no kernel left"))
    failed = call(apis, "double", {"x": 2})
    assert (failed.status, failed.reason) == (ExecutionStatus.FAILED, "no kernel left")


def test_a_hanging_execution_times_out_by_its_contract(apis: Apis) -> None:
    apis.engine.plan(Plan.hang())
    late = call(apis, "slow", {"x": 1})
    assert late.status == ExecutionStatus.TIMED_OUT
    assert late.reason == "the execution did not finish within 0.2 s"


@pytest.mark.parametrize(
    "worker",
    [
        {"concurrency": 1},
        # a look for work and a heartbeat a minute away: only signals can take the queued one
        # when the first ends, and carry the cancel to it
        {"concurrency": 1, "poll_interval": 60, "heartbeat_interval": 60},
    ],
    ids=["polling", "signals"],
)
def test_a_busy_worker_queues_the_next_and_cancel_frees_it(
    apis: Apis, worker: dict[str, Any]
) -> None:
    apis.engine.plan(Plan.hang(), Plan.succeed({"y": 2}))

    async def steps(service: ExecutionService) -> tuple[DescribeExecution, ...]:
        first = await service.submit("double", {"x": 1}, ALICE)
        await asyncio.wait_for(apis.engine.running.wait(), 10)
        second = await service.submit("double", {"x": 1}, ALICE)
        queued = await service.wait(second.id, 0, ALICE)
        cancelled = await service.cancel(first.id, ALICE)
        return queued, cancelled, await service.wait(second.id, 10, ALICE)

    queued, cancelled, second = apis.run(steps, **worker)
    assert queued.status == ExecutionStatus.QUEUED
    assert (cancelled.status, cancelled.reason) == (ExecutionStatus.CANCELLED, "cancelled")
    assert (second.status, second.output) == (ExecutionStatus.COMPLETED, {"y": 2})
    assert len(apis.engine.requests) == 2


@pytest.mark.parametrize("wait", [0, 10])
def test_an_execution_the_store_refuses_answers_the_error_and_its_run_stops(
    apis: Apis, monkeypatch: pytest.MonkeyPatch, wait: float
) -> None:
    """Taken at once, an execution runs while it is stored: when the insert fails the caller
    gets its error, not a record nobody can find, and the run is stopped, never ended."""
    apis.engine.plan(Plan.hang())

    def refuse(store: ExecutionStore, record: DescribeExecution) -> None:
        deadline = time.monotonic() + 10
        while not apis.engine.running.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # refused once its run started
        raise StoreError("database is locked", field="store_url")

    monkeypatch.setattr(ExecutionStore, "create", refuse)

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await asyncio.sleep(0.01)

    async def steps(service: ExecutionService) -> None:
        worker = service.worker
        assert worker is not None
        await asyncio.wait_for(until(lambda: worker.takes_at_once), 10)
        with pytest.raises(StoreError, match="database is locked"):
            await service.submit("double", {"x": 1}, ALICE, wait=wait)
        assert len(apis.engine.requests) == 1  # it ran: taken at once
        # stopped, not left hanging until its 60 s timeout
        await asyncio.wait_for(until(lambda: not worker.busy), 10)

    apis.run(steps)
    everything = ListExecutionsQuery.model_validate({})
    assert apis.store.executions.page(everything, only_owner=None).total == 0


def test_an_execution_records_where_its_time_went(apis: Apis) -> None:
    """Every hop but ``record`` (which only the answer knows), in order, stored with the
    final status; a failed execution keeps the hops it went through."""
    apis.engine.plan(Plan.succeed({"y": 4}), Plan.fail("bad x"))

    async def steps(service: ExecutionService) -> list[DescribeExecution]:
        return [await service.submit("double", {"x": x}, ALICE, wait=10) for x in (2, 3)]

    done, failed = apis.run(steps)
    assert list(done.timings) == [hop for hop in HOPS if hop != "record"]
    assert all(milliseconds >= 0 for milliseconds in done.timings.values())
    stored = apis.store.executions.get(done.id)
    assert stored is not None and stored.timings == done.timings
    assert list(failed.timings) == [hop for hop in HOPS if hop not in ("validate_output", "record")]


def test_a_wait_sees_an_end_signalled_by_another_process_without_a_worker(apis: Apis) -> None:
    """A server without a worker waits for an execution another process ends (here: the
    store written to directly, as that process would)."""

    async def main() -> DescribeExecution:
        service = ExecutionService(apis.store, apis.catalog, None, apis.cache)
        queued = await service.submit("double", {"x": 1}, ALICE)
        waiting = asyncio.create_task(service.wait(queued.id, 10, ALICE))
        claimed = await asyncio.to_thread(apis.store.executions.claim, "elsewhere", now())
        [taken] = claimed.taken
        ended = taken.model_copy(update={"status": ExecutionStatus.FAILED, "finished_at": now()})
        await asyncio.to_thread(apis.store.executions.finish, ended, "elsewhere")
        return await waiting

    assert asyncio.run(main()).status == ExecutionStatus.FAILED


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_workers_in_other_processes_hear_of_queued_and_cancelled_executions_at_once(
    apis: Apis, store_url: str
) -> None:
    """Two processes on one PostgreSQL database (two stores, each listening on a connection
    of its own): the web tier without a worker, and a worker that looks for work and beats
    only once a minute. Its queued execution is taken, its end reaches the waiting web tier,
    and its cancel reaches the worker, each by NOTIFY."""
    apis.engine.plan(Plan.succeed({"y": 2}), Plan.hang())
    web_store = open_store(store_url)

    async def steps(_: ExecutionService) -> tuple[DescribeExecution, DescribeExecution]:
        web = ExecutionService(web_store, apis.catalog, None, apis.cache)
        done = await web.submit("double", {"x": 1}, ALICE, wait=10)
        hanging = await web.submit("double", {"x": 1}, ALICE)
        await asyncio.wait_for(apis.engine.running.wait(), 10)
        return done, await web.cancel(hanging.id, ALICE)

    try:
        done, cancelled = apis.run(steps, poll_interval=60, heartbeat_interval=60, stale_after=600)
        assert web_store.signals.listening and apis.store.signals.listening
    finally:
        web_store.close()
    assert (done.status, done.output) == (ExecutionStatus.COMPLETED, {"y": 2})
    assert cancelled.status == ExecutionStatus.CANCELLED


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_dropped_listening_connection_listens_again(apis: Apis) -> None:
    """After its connection is killed, the listening thread connects again, says so with a
    ``resync`` (signals may have been missed meanwhile), and hears the next ones."""
    from sqlalchemy import text

    async def main() -> list[Signal]:
        heard: asyncio.Queue[Signal] = asyncio.Queue()
        unsubscribe = apis.store.signals.subscribe(heard.put_nowait)
        try:
            first = await asyncio.wait_for(heard.get(), 10)
            with apis.store.engine.begin() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND datname = current_database()"
                    ),
                    {"name": LISTENER_NAME},
                )
            again = await asyncio.wait_for(heard.get(), 10)
            another = open_store(apis.store.engine.url.render_as_string(hide_password=False))
            try:
                service = ExecutionService(another, apis.catalog, None, apis.cache)
                queued = await service.submit("double", {"x": 1}, ALICE)
            finally:
                another.close()
            signal = await asyncio.wait_for(heard.get(), 10)
            assert signal.execution_id == queued.id
            return [first, again, signal]
        finally:
            unsubscribe()

    assert [signal.kind for signal in asyncio.run(main())] == ["resync", "resync", "queued"]
