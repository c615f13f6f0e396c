"""The control lease: :class:`LeasedLoops` on :class:`nbplane.testing.FakeLease` (loops run in
one holder at a time, handed over on release, stopped before the expiry when renewals fail),
and the database lease on a real store with a clock of its own (expiry, renewal, takeover,
release). The Kubernetes Lease: tests/k8s/test_lease.py; two real servers: tests/integration/
test_takeover.py."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nbplane.errors import ConfigError
from nbplane.platform.lease import CONTROL_LEASE, LeasedLoops
from nbplane.settings import Settings
from nbplane.store import open_store
from nbplane.store.leases import DatabaseLease
from nbplane.testing import FakeLease

DURATION = 1.0
RENEW = 0.25


class Recorder:
    """Loops that note when they run, shared by every holder: ``running`` never exceeds 1."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.most = 0
        self.starts: list[str] = []
        self.moments: list[tuple[str, str, float]] = []
        """(holder, "start" or "stop", time.monotonic()) of each start and stop."""

    def loops(self, holder: str) -> Loops:
        return Loops(self, holder)


class Loops:
    def __init__(self, recorder: Recorder, holder: str) -> None:
        self.recorder = recorder
        self.holder = holder

    async def start(self) -> None:
        self.recorder.running.append(self.holder)
        self.recorder.starts.append(self.holder)
        self.recorder.most = max(self.recorder.most, len(self.recorder.running))
        self.recorder.moments.append((self.holder, "start", time.monotonic()))

    async def stop(self) -> None:
        self.recorder.running.remove(self.holder)
        self.recorder.moments.append((self.holder, "stop", time.monotonic()))


def replicas(
    recorder: Recorder, *names: str
) -> tuple[dict[str, tuple[str, float]], list[LeasedLoops]]:
    place: dict[str, tuple[str, float]] = {}
    made = [
        LeasedLoops(
            FakeLease(name, DURATION, place=place),
            lambda name=name: [recorder.loops(name)],  # type: ignore[misc]
            RENEW,
        )
        for name in names
    ]
    return place, made


async def until(condition: object, seconds: float = 3.0) -> float:
    """Wait for ``condition()``; returns how long it took."""
    began = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - began < seconds, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def test_one_holder_runs_the_loops_and_the_other_takes_over_when_it_releases() -> None:
    recorder = Recorder()

    async def main() -> None:
        _, (first, second) = replicas(recorder, "a", "b")
        await first.start()
        await second.start()
        assert first.holding and not second.holding
        assert recorder.running == ["a"]
        assert second.last_beat > 0, "an attempt answered 'held by another' is a beat too"
        assert first.alive and second.alive
        await asyncio.sleep(3 * RENEW)
        assert recorder.running == ["a"], "renewals keep it with its holder"
        await first.stop()
        waited = await until(lambda: second.holding)
        assert waited < DURATION - RENEW, "a released lease is taken before it would expire"
        assert recorder.running == ["b"]
        await second.stop()

    asyncio.run(main())
    assert recorder.most == 1 and recorder.running == []


def test_a_holder_that_cannot_renew_stops_its_loops_before_the_lease_expires() -> None:
    recorder = Recorder()

    async def main() -> None:
        place, (first, second) = replicas(recorder, "a", "b")
        await first.start()
        await second.start()
        assert isinstance(first.lease, FakeLease)
        first.lease.unreachable = True  # its database is gone: no renewal, no release
        expiry = place[CONTROL_LEASE][1]
        await until(lambda: not first.holding)
        await until(lambda: second.holding)
        await until(lambda: not first.alive)
        (_, _, stopped), (_, _, started) = recorder.moments[1:]
        assert stopped < expiry, "stopped while its lease still held"
        assert started >= expiry, "the other took it only after the expiry"
        first.lease.unreachable = False
        await asyncio.sleep(3 * RENEW)
        assert not first.holding, "back, it finds the lease held by the other"
        await first.stop()
        await second.stop()

    asyncio.run(main())
    assert recorder.most == 1
    assert recorder.starts == ["a", "b"]


def test_loops_that_fail_to_start_are_tried_again() -> None:
    attempts: list[int] = []

    class Failing:
        async def start(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("executor not ready")

        async def stop(self) -> None:
            pass

    async def main() -> None:
        loops = LeasedLoops(FakeLease("a", DURATION), lambda: [Failing()], RENEW)
        with pytest.raises(RuntimeError):
            await loops.start()  # the first try fails the start, as a bad setting should
        assert not loops.holding
        await loops.turn()  # what the next turn of its loop does
        assert loops.holding
        await loops.stop()

    asyncio.run(main())
    assert len(attempts) == 2


def test_a_renewal_interval_too_long_for_the_lease_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        LeasedLoops(FakeLease("a", 8.0), list, 5.0)
    assert refused.value.fields["field"] == "lease_renew_seconds"
    assert "NBPLANE_LEASE_RENEW_SECONDS" in refused.value.message


def test_default_settings_take_over_within_ten_seconds() -> None:
    settings = Settings()
    assert settings.lease_duration_seconds + settings.lease_renew_seconds <= 10
    assert settings.lease_renew_seconds * 2 <= settings.lease_duration_seconds


class Clock:
    def __init__(self) -> None:
        self.time = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += timedelta(seconds=seconds)


def test_the_database_lease_expires_renews_is_taken_over_and_released(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url)
    clock = Clock()
    first = DatabaseLease(store.leases, CONTROL_LEASE, "a", 8, clock)
    second = DatabaseLease(store.leases, CONTROL_LEASE, "b", 8, clock)

    async def main() -> None:
        assert await first.acquire()
        assert not await second.acquire()
        assert store.leases.holder(CONTROL_LEASE, clock()) == "a"
        clock.advance(6)
        assert await first.acquire(), "renewed before the expiry"
        clock.advance(6)
        assert not await second.acquire(), "the renewal moved the expiry on"
        clock.advance(2)
        assert store.leases.holder(CONTROL_LEASE, clock()) is None, "expired"
        assert await second.acquire(), "expired: taken over"
        assert not await first.acquire(), "the old holder cannot renew a lease taken from it"
        await first.release()  # not its lease: changes nothing
        assert not await first.acquire()
        await second.release()
        assert await first.acquire(), "released: free at once"

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_two_holders_racing_for_a_free_database_lease_get_one_each_time(store_url: str) -> None:
    store = open_store(store_url)
    clock = Clock()
    holders = [DatabaseLease(store.leases, CONTROL_LEASE, f"r{i}", 8, clock) for i in range(4)]

    async def main() -> list[bool]:
        results: list[bool] = []
        for _ in range(3):
            results += await asyncio.gather(*(holder.acquire() for holder in holders))
            clock.advance(10)  # everyone's expired before the next round
        return results

    try:
        won = asyncio.run(main())
    finally:
        store.close()
    assert [sum(won[i : i + 4]) for i in range(0, 12, 4)] == [1, 1, 1]
