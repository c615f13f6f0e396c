"""The session lifecycle, in process on SQLite: every status change follows one table, and of
two callers acting on the same look at a session exactly one wins."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nbplane.platform.metrics import Metrics
from nbplane.platform.secrets import SecretBox
from nbplane.sessions.launchers import launcher_named
from nbplane.sessions.launchers.base import LaunchPhase, LaunchStatus
from nbplane.sessions.lifecycle import TRANSITIONS, SessionLifecycle
from nbplane.sessions.models import NewSession, SessionStatus
from nbplane.settings import Settings
from nbplane.store import open_store


def test_the_table_names_every_status_and_no_status_moves_to_itself() -> None:
    assert set(TRANSITIONS) == set(SessionStatus)
    assert all(status not in targets for status, targets in TRANSITIONS.items())


def test_changes_follow_the_table_and_one_of_two_racing_callers_wins(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sandbox="none")
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")

    async def scenario() -> None:
        # The local launcher with no process recorded: hibernate and stop have nothing to stop.
        metrics = Metrics()
        launcher = launcher_named("local", settings)
        lifecycle = SessionLifecycle(store, settings, launcher, None, metrics)
        woken: list[None] = []
        lifecycle.on_change.append(lambda: woken.append(None))
        sealed = SecretBox(settings).seal({"token": "t", "nbplane_token": None, "environment": {}})
        new = NewSession(
            id="s1",
            owner="alice",
            anonymous=False,
            resource_class="small",
            image=None,
            directory=None,
            repository=None,
            commit=None,
            secrets=sealed,
            token_name=None,
            launcher="local",
            expires_at=None,
        )
        created = await lifecycle.create(new)
        assert (created.status, created.steps, created.connections) == ("starting", [], [])
        assert not await lifecycle.resume("s1"), "only a hibernated or failed session resumes"

        ready = LaunchStatus(LaunchPhase.RUNNING, url="http://127.0.0.1:1/", ready=True)
        await lifecycle.ready(created, ready)
        running = store.sessions.get("s1")
        assert (running.status, running.ready, running.url) == ("running", True, ready.url)
        await lifecycle.ready(created, ready)  # the same look again: it was running already
        started = metrics.registry.get_sample_value
        assert started("nbplane_session_start_seconds_count") == 1  # created -> running
        assert 0 <= (started("nbplane_session_start_seconds_sum") or -1) < 60

        assert await lifecycle.fail(running, "its server is gone", logs=False)
        failed = store.sessions.get("s1")
        assert (failed.status, failed.reason, failed.ready) == (
            "failed",
            "its server is gone",
            False,
        )
        assert not await lifecycle.fail(failed, "again"), "a failed session is not failed again"

        assert await lifecycle.resume("s1")
        look = store.sessions.get("s1")
        assert (look.status, look.reason) == ("starting", None)
        assert await lifecycle.hibernate(look, "idle")
        assert not await lifecycle.hibernate(look, "idle"), "the same look wins once"
        hibernated = store.sessions.get("s1")
        assert (hibernated.status, hibernated.reason, hibernated.action) == (
            "hibernated",
            "idle",
            None,
        )
        assert lifecycle.delete_at(hibernated) is not None

        assert await lifecycle.delete(hibernated, purge=False)
        assert not await lifecycle.delete(hibernated, purge=False)
        assert store.sessions.find("s1") is None
        assert woken, "every change wakes the loop"
        await lifecycle.launcher.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
