"""The API execution lifecycle in-process on a SQLite store: the allowed status changes, one
writer, a final status never overwritten, lost workers, and why an execution ended in words.
The same flows on real kernels and servers: tests/integration/test_server.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nbplane.apis.engines.base import ExecutionOutcome
from nbplane.apis.lifecycle import Ending, ExecutionLifecycle
from nbplane.apis.models import TRANSITIONS, DescribeExecution, ExecutionStatus
from nbplane.errors import InvalidOutput, NotFound
from nbplane.store import open_store

QUEUED, RUNNING = ExecutionStatus.QUEUED, ExecutionStatus.RUNNING
COMPLETED, FAILED = ExecutionStatus.COMPLETED, ExecutionStatus.FAILED
CANCELLED = ExecutionStatus.CANCELLED
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def lifecycle(tmp_path: Path) -> Iterator[ExecutionLifecycle]:
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")
    yield ExecutionLifecycle(store)
    store.engine.dispose()


def queued(retries: int = 0) -> DescribeExecution:
    return DescribeExecution(
        id=str(uuid.uuid4()),
        notebook="double",
        notebook_version="v1",
        parameters={"x": 1},
        status=QUEUED,
        engine="isolated",
        timeout=5,
        retries=retries,
        attempts=0,
        created_at=NOW,
        created_by="alice",
    )


def test_the_allowed_changes() -> None:
    assert RUNNING.sources() == [QUEUED]
    assert COMPLETED.sources() == [RUNNING]
    assert set(CANCELLED.sources()) == {QUEUED, RUNNING}
    assert QUEUED.sources() == [RUNNING]  # a lost worker's execution, queued again
    finals = {status for status in ExecutionStatus if status.final}
    assert finals == set(ExecutionStatus) - {QUEUED, RUNNING}
    assert not finals & set(TRANSITIONS)


def test_an_execution_is_taken_once_and_ended_once(lifecycle: ExecutionLifecycle) -> None:
    record = queued()
    lifecycle.queue(record)
    [taken] = lifecycle.claim("w1", NOW, None).taken
    assert taken.id == record.id
    assert (taken.status, taken.worker_id, taken.attempts) == (RUNNING, "w1", 1)
    assert lifecycle.claim("w2", NOW, None).taken == []
    assert lifecycle.end(taken, "w2", Ending(COMPLETED), NOW) is None  # not w2's
    ending = Ending(COMPLETED, output={"y": 2}, has_output=True, artifacts={"logs": "hi\n"})
    final = lifecycle.end(taken, "w1", ending, NOW + timedelta(seconds=1))
    assert final is not None and final.status == COMPLETED and final.duration == 1
    assert lifecycle.end(taken, "w1", Ending(FAILED, "again"), NOW) is None
    stored = lifecycle.store.executions.get(record.id)
    assert stored is not None and (stored.status, stored.output) == (COMPLETED, {"y": 2})
    assert lifecycle.store.executions.artifact(record.id, "logs") == "hi\n"


def test_a_worker_takes_several_at_once_and_learns_whether_others_wait(
    lifecycle: ExecutionLifecycle,
) -> None:
    """Oldest first, in one write; whether others wait is read in it, so a worker never
    writes again only to find the queue empty."""
    records = [
        queued().model_copy(update={"created_at": NOW + timedelta(seconds=i)}) for i in range(4)
    ]
    for record in records:
        lifecycle.queue(record)
    first = lifecycle.claim("w1", NOW, None, limit=2)
    assert [taken.id for taken in first.taken] == [records[0].id, records[1].id]
    assert first.others_wait
    assert lifecycle.claim("w1", NOW, ["another"], limit=2) == ([], False)
    last = lifecycle.claim("w1", NOW, None, limit=2)
    assert [taken.id for taken in last.taken] == [records[2].id, records[3].id]
    assert not last.others_wait


def test_taken_at_once_skips_the_queue(lifecycle: ExecutionLifecycle) -> None:
    taken = lifecycle.as_taken(queued(), "w1", NOW)
    lifecycle.take_now(taken)
    assert (taken.status, taken.worker_id, taken.started_at) == (RUNNING, "w1", NOW)
    assert lifecycle.claim("w2", NOW, None).taken == []
    assert lifecycle.end(taken, "w1", Ending(COMPLETED), NOW) is not None


def test_a_cancel_ends_a_queued_execution_and_asks_a_running_one(
    lifecycle: ExecutionLifecycle,
) -> None:
    waiting, running = queued(), queued()
    lifecycle.queue(running)
    [taken] = lifecycle.claim("w1", NOW, None).taken
    lifecycle.queue(waiting)
    cancelled = lifecycle.cancel(waiting.id, NOW)
    assert cancelled is not None and cancelled.status == CANCELLED
    assert lifecycle.claim("w1", NOW, None).taken == []
    asked = lifecycle.cancel(running.id, NOW)
    assert asked is not None and (asked.status, asked.cancel_requested) == (RUNNING, True)
    assert lifecycle.beat(running.id, "w1", NOW) is True
    ended = lifecycle.end(taken, "w1", Ending(CANCELLED, "cancelled"), NOW)
    assert ended is not None and ended.status == CANCELLED


def test_a_lost_worker_s_execution_is_retried_then_failed(lifecycle: ExecutionLifecycle) -> None:
    record = queued(retries=1)
    lifecycle.queue(record)
    assert lifecycle.claim("w1", NOW, None).taken != []
    later = NOW + timedelta(minutes=1)
    assert lifecycle.recover_lost(later, timedelta(seconds=30)) == [record.id]
    [again] = lifecycle.claim("w2", later, None).taken
    assert again.attempts == 2
    assert lifecycle.recover_lost(later + timedelta(minutes=1), timedelta(seconds=30)) == []
    lost = lifecycle.store.executions.get(record.id)
    assert lost is not None and lost.status == FAILED and lost.error == {"reason": "worker_lost"}
    assert lifecycle.end(again, "w2", Ending(COMPLETED), later) is None


def outcome(status: str, **error: Any) -> ExecutionOutcome:
    return ExecutionOutcome(status=status, notebook={"cells": []}, error=error or None)


@pytest.mark.parametrize(
    ("ran", "reason"),
    [
        (outcome("completed"), None),
        (
            outcome("failed", reason="exception", cell=2, ename="ValueError", evalue="bad"),
            "exception in cell 3: ValueError: bad",
        ),
        (outcome("failed", reason="kernel_died", message="killed"), "kernel died: killed"),
        (outcome("failed", reason="kernel_failed_to_start"), "kernel failed to start"),
        (outcome("timed_out", reason="timeout", message="over 5 s"), "over 5 s"),
        (outcome("timed_out"), "timed out"),
        (outcome("cancelled", reason="cancelled"), "cancelled"),
    ],
)
def test_why_an_execution_ended_in_words(ran: ExecutionOutcome, reason: str | None) -> None:
    ending = Ending.of_outcome(ran)
    assert (ending.status, ending.reason) == (ExecutionStatus(ran.status), reason)
    assert set(ending.artifacts) == {"ipynb", "logs"}


def test_endings_of_errors_and_refused_outputs() -> None:
    known = Ending.of_error(NotFound("no notebook API named 'x'", field="notebook"))
    assert (known.status, known.reason) == (FAILED, "no notebook API named 'x'")
    assert known.error is not None and known.error["field"] == "notebook"
    bug = Ending.of_error(KeyError("k"))
    assert bug.reason == "nbplane failed: KeyError('k')"
    assert bug.error == {"reason": "internal", "message": "KeyError('k')"}
    completed = Ending.of_outcome(ExecutionOutcome("completed", {}, {"y": "2"}, True))
    refused = completed.output_refused(InvalidOutput("/y: not a number", field="output"))
    assert (refused.status, refused.reason) == (FAILED, "output schema: /y: not a number")
    assert (refused.output, refused.has_output) == ({"y": "2"}, True)
