"""The session service, its lifecycle and reconciler in-process, on
:class:`nbplane.testing.FakeLauncher`:
create -> starting -> running, hibernate, resume, delete; a server that fails, hangs, is refused
or dies later; an idle one hibernated. The same lifecycle with real Jupyter servers:
tests/integration/test_sessions.py and test_local_launcher.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbplane.auth.models import DescribeCaller
from nbplane.errors import Conflict, Forbidden, NotFound
from nbplane.sessions.models import CreateSession, SessionStatus
from nbplane.sessions.reconciler import SessionReconciler
from nbplane.sessions.service import SessionService
from nbplane.settings import Settings
from nbplane.store import Store, open_store
from nbplane.testing import FakeLauncher, Plan

ALICE = DescribeCaller(user="alice", admin=False, teams=["analytics"])
BOB = DescribeCaller(user="bob", admin=False, teams=["ops"])
ADMIN = DescribeCaller(user="root", admin=True, teams=[])
PUBLIC_URL = "http://127.0.0.1:9"


@dataclass
class Sessions:
    store: Store
    settings: Settings
    launcher: FakeLauncher

    def run(self, steps: Callable[[SessionService, SessionReconciler], Awaitable[Any]]) -> Any:
        """Run ``steps`` with a service and a plane whose loop is not started: the test turns
        it."""

        async def main() -> Any:
            service = SessionService(self.store, self.settings, self.launcher, PUBLIC_URL)
            return await steps(service, SessionReconciler(service.lifecycle))

        return asyncio.run(main())


@pytest.fixture
def sessions(tmp_path: Path, store_url: str) -> Iterator[Sessions]:
    settings = Settings(home=tmp_path / "home", session_pool_size=0)
    store = open_store(store_url)
    store.auth.create_user("alice")
    store.auth.add_member("alice", "analytics")
    yield Sessions(store, settings, FakeLauncher(settings))
    store.engine.dispose()


def with_settings(sessions: Sessions, **changes: Any) -> Sessions:
    return Sessions(sessions.store, sessions.settings.model_copy(update=changes), sessions.launcher)


def test_create_run_hibernate_resume_delete(sessions: Sessions) -> None:
    launcher = sessions.launcher

    async def steps(service: SessionService, plane: SessionReconciler) -> None:
        created = await service.create(ALICE, CreateSession(environment={"COLOUR": "blue"}))
        assert created.status == SessionStatus.STARTING and not created.ready
        token = launcher.specs[0].environment["NBPLANE_TOKEN"]  # alice's, for this session
        assert getattr(service.users.authenticate(token), "user", None) == "alice"
        await plane.turn()
        running = await service.get(ALICE, created.id)
        assert running.status == SessionStatus.RUNNING and running.ready
        assert running.url == f"{PUBLIC_URL}/sessions/{created.id}/", "users open it at nbplane"
        address, token = await service.upstream(ALICE, created.id)
        assert address.startswith("http://127.0.0.1:9/fake-1/") and token == launcher.specs[0].token
        with pytest.raises(Forbidden):  # an admin stops others' sessions, does not open them
            await service.upstream(ADMIN, created.id)
        with pytest.raises(NotFound):
            await service.upstream(BOB, created.id)

        hibernated = await service.hibernate(ALICE, created.id)
        assert hibernated.status == SessionStatus.HIBERNATED
        assert hibernated.reason == "hibernated by its user"
        resumed = await service.resume(ALICE, created.id)
        assert resumed.status == SessionStatus.STARTING
        with pytest.raises(Conflict) as starting:
            await service.upstream(ALICE, created.id)
        assert starting.value.fields == {"field": "status", "status": "starting"}
        await plane.turn()
        address, _ = await service.upstream(ALICE, created.id)
        assert address.startswith("http://127.0.0.1:9/fake-2/")

        await service.delete(ALICE, created.id, purge=True)
        with pytest.raises(NotFound):
            await service.get(ALICE, created.id)

    sessions.run(steps)
    first, again = launcher.specs
    assert first.id == again.id and first.user == "alice" and first.token == again.token
    assert first.environment["COLOUR"] == "blue"
    assert first.environment["NBPLANE_URL"] == PUBLIC_URL
    assert [state["fake"] for state in launcher.hibernated] == ["fake-1"]
    assert [state["fake"] for state in launcher.stopped] == ["fake-2"]
    assert launcher.purged == [first.id]
    assert sessions.store.auth.authenticate(first.environment["NBPLANE_TOKEN"]) is None


def test_a_server_that_fails_to_start_fails_the_session_with_its_last_words(
    sessions: Sessions,
) -> None:
    sessions.launcher.plan(Plan.fail("image pull failed"))

    async def steps(service: SessionService, plane: SessionReconciler) -> Any:
        created = await service.create(ALICE, CreateSession())
        await plane.turn()
        return await service.get(ALICE, created.id)

    failed = sessions.run(steps)
    assert failed.status == SessionStatus.FAILED and not failed.ready
    assert failed.reason.startswith("could not start: image pull failed\n--- last lines")
    assert f"fake server fake-1 of session {failed.id}" in failed.reason
    assert [state["fake"] for state in sessions.launcher.stopped] == ["fake-1"]
    assert sessions.launcher.purged == []  # the workspace is kept for a resume


def test_a_server_not_ready_in_time_fails_the_session(sessions: Sessions) -> None:
    sessions.launcher.plan(Plan.hang())

    async def steps(service: SessionService, plane: SessionReconciler) -> Any:
        created = await service.create(ALICE, CreateSession())
        await plane.turn()
        assert (await service.get(ALICE, created.id)).status == SessionStatus.STARTING
        await asyncio.sleep(1)
        await plane.turn()
        return await service.get(ALICE, created.id)

    failed = with_settings(sessions, session_start_timeout_seconds=1).run(steps)
    assert failed.status == SessionStatus.FAILED
    assert failed.reason.startswith("not ready 1 s after it was started (start timeout)")


def test_a_refused_start_fails_the_session_at_once(sessions: Sessions) -> None:
    sessions.launcher.plan(Plan.refuse("quota exceeded"))

    async def steps(service: SessionService, plane: SessionReconciler) -> Any:
        return await service.create(ALICE, CreateSession())

    failed = sessions.run(steps)
    assert (failed.status, failed.reason) == (
        SessionStatus.FAILED,
        "could not start: quota exceeded",
    )
    assert sessions.launcher.specs == []


def test_a_server_that_dies_is_seen_when_the_server_starts_again(sessions: Sessions) -> None:
    async def start(service: SessionService, plane: SessionReconciler) -> str:
        created = await service.create(ALICE, CreateSession())
        await plane.turn()
        return created.id

    session_id = sessions.run(start)
    sessions.launcher.crash(session_id, "OOMKilled")

    async def restart(service: SessionService, plane: SessionReconciler) -> Any:
        await plane.turn()  # a new plane polls every running session at once
        return await service.get(ALICE, session_id)

    failed = sessions.run(restart)
    assert failed.status == SessionStatus.FAILED
    assert failed.reason.startswith("its server is gone: OOMKilled")


def test_an_idle_session_is_hibernated(sessions: Sessions) -> None:
    async def steps(service: SessionService, plane: SessionReconciler) -> Any:
        created = await service.create(ALICE, CreateSession())
        await plane.turn()
        await asyncio.sleep(0.05)
        await plane.turn()
        return await service.get(ALICE, created.id)

    idle = with_settings(sessions, session_idle_hibernate_seconds=0.05).run(steps)
    assert (idle.status, idle.reason) == (SessionStatus.HIBERNATED, "idle for 0.05 s: hibernated")
