"""The notebook API's execution service and worker in-process, on
:class:`nbplane.testing.FakeEngine`: submit -> run -> stored outcome, failures in words, the
output checked against the contract, cancel, timeout, and the queue behind a busy worker. The
same flows on real kernels: tests/integration/test_server.py and test_engines.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from nbplane.apis import worker as worker_module
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.apis.service import ExecutionService
from nbplane.apis.worker import Worker
from nbplane.auth.models import DescribeCaller
from nbplane.platform.metrics import Metrics
from nbplane.store import Store, open_store
from nbplane.testing import FakeEngine, Plan
from tests.integration.api_notebooks import NUMBER_IN, write_api

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
            running = Worker(self.store, self.catalog, poll_interval=0.05, **worker)
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
    engine = FakeEngine()
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


def test_a_busy_worker_queues_the_next_and_cancel_frees_it(apis: Apis) -> None:
    apis.engine.plan(Plan.hang(), Plan.succeed({"y": 2}))

    async def steps(service: ExecutionService) -> tuple[DescribeExecution, ...]:
        first = await service.submit("double", {"x": 1}, ALICE)
        await asyncio.wait_for(apis.engine.running.wait(), 10)
        second = await service.submit("double", {"x": 1}, ALICE)
        queued = await service.wait(second.id, 0, ALICE)
        cancelled = await service.cancel(first.id, ALICE)
        return queued, cancelled, await service.wait(second.id, 10, ALICE)

    queued, cancelled, second = apis.run(steps, concurrency=1)
    assert queued.status == ExecutionStatus.QUEUED
    assert (cancelled.status, cancelled.reason) == (ExecutionStatus.CANCELLED, "cancelled")
    assert (second.status, second.output) == (ExecutionStatus.COMPLETED, {"y": 2})
    assert len(apis.engine.requests) == 2
