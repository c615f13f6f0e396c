"""The sessions' loop, run by the one replica holding the control lease
(``platform/lease.py``) against the shared database.

Each turn it looks at every session that is not settled for good: a starting one is polled
through its launcher until its server is ready (or fails, or misses
NBPLANE_SESSION_START_TIMEOUT_SECONDS: failed with the tail of its logs); a running one is
polled every few seconds, its Jupyter server asked for its own ``last_activity``
(``GET {url}api/status``), and hibernated once idle for NBPLANE_SESSION_IDLE_HIBERNATE_SECONDS;
a hibernated one is deleted after NBPLANE_SESSION_HIBERNATED_DELETE_SECONDS (its workspace kept),
an anonymous one at the end of its lifetime. A session left ``stopping`` by a replica that
died mid-way is stopped again. The loop only decides when: every change of status is made by
:class:`~nbplane.sessions.lifecycle.SessionLifecycle`, which wakes the loop after each.

The first turn, when the server starts, reconciles the records with what really runs: a
``running`` session whose server is gone becomes ``failed`` with the launcher's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

import httpx

from nbplane._time import now, sleep_or_wake
from nbplane.sessions.jupyter_api import last_activity
from nbplane.sessions.launchers.base import LaunchPhase
from nbplane.sessions.lifecycle import SessionLifecycle, db, steps_of
from nbplane.sessions.models import SessionRecord, SessionStatus

log = logging.getLogger("nbplane.sessions")

TICK_SECONDS = 0.2
"""How often starting sessions are polled: a ready server is seen within about this long."""
RUNNING_POLL_SECONDS = 2.0
"""How often a running session's server is polled and asked for its last activity."""
STUCK_SECONDS = 30.0
"""A session ``stopping`` unchanged this long lost the replica stopping it: stop it again."""
ACTIVITY_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
WATCHED = (
    SessionStatus.STARTING,
    SessionStatus.RUNNING,
    SessionStatus.STOPPING,
    SessionStatus.HIBERNATED,
)
"""Every status that changes without anyone asking; failed ones wait for their user."""


class SessionReconciler:
    """Watches the sessions and tells their lifecycle when a change is due; woken by it after
    every change."""

    def __init__(self, lifecycle: SessionLifecycle) -> None:
        self.lifecycle = lifecycle
        self.records = lifecycle.records
        self.settings = lifecycle.settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._polled: dict[str, float] = {}
        """When this replica last polled each running session (monotonic)."""
        self._busy: set[str] = set()
        self._http = httpx.AsyncClient(timeout=ACTIVITY_TIMEOUT)
        self._loop = asyncio.get_running_loop()
        lifecycle.on_change.append(self._poke)

    def _poke(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        await self.lifecycle.launcher.prepare()
        await self.turn()  # reconcile before the first request is answered
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        """Stop watching; the launcher stays open for the server's requests (its owner closes
        it)."""
        self.lifecycle.on_change.remove(self._poke)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def _forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.turn()
            except Exception:  # a loop that dies would stop every session's watch
                log.exception("session loop failed; retrying")
            await sleep_or_wake(self._wake, TICK_SECONDS)

    async def turn(self) -> None:
        records = await db(self.records.list_sessions, None, WATCHED)
        seen = {record.id for record in records}
        self._polled = {key: value for key, value in self._polled.items() if key in seen}
        await asyncio.gather(*(self._guarded(record) for record in records))

    async def _guarded(self, record: SessionRecord) -> None:
        if record.id in self._busy:
            return  # still being handled by an earlier turn
        self._busy.add(record.id)
        try:
            await self.watch(record)
        except Exception as exc:  # one session's trouble must not stall the others
            log.exception("watching session %s failed", record.id)
            await self.lifecycle.fail(record, f"nbplane failed watching it: {exc!r}")
        finally:
            self._busy.discard(record.id)

    async def watch(self, record: SessionRecord) -> None:
        current = now()
        expired = record.expires_at is not None and current >= record.expires_at
        if expired and record.status != SessionStatus.STOPPING:
            await self.lifecycle.delete(record, purge=True, expected=(record.status,))
            return
        if record.status == SessionStatus.STARTING:
            await self._starting(record, current)
        elif record.status == SessionStatus.RUNNING:
            await self._running(record, current)
        elif record.status == SessionStatus.HIBERNATED:
            after = self.settings.session_hibernated_delete_seconds
            if (
                after
                and record.hibernated_at
                and current - record.hibernated_at > timedelta(seconds=after)
            ):
                await self.lifecycle.delete(record, purge=False, expected=(record.status,))
        elif current - record.updated_at > timedelta(seconds=STUCK_SECONDS):
            await self.lifecycle.stop_again(record)

    async def _starting(self, record: SessionRecord, current: datetime) -> None:
        timeout = self.settings.session_start_timeout_seconds
        late = current - record.started_at > timedelta(seconds=timeout)
        if record.launcher_state is None:  # the replica starting it has not said how yet
            if late:
                await self.lifecycle.fail(record, "lost while starting: its nbplane server stopped")
            return
        status = await self.lifecycle.poll(record)
        if status.phase == LaunchPhase.RUNNING and status.ready:
            await self.lifecycle.ready(record, status)
            self._polled[record.id] = time.monotonic()
            return
        if status.phase in (LaunchPhase.FAILED, LaunchPhase.STOPPED):
            words = status.reason or "its server stopped before it was ready"
            await self.lifecycle.fail(record, f"could not start: {words}", steps=steps_of(status))
            return
        if late:
            await self.lifecycle.fail(
                record, f"not ready {timeout:g} s after it was started (start timeout)"
            )
            return
        await self.lifecycle.progress(record, status)

    async def _running(self, record: SessionRecord, current: datetime) -> None:
        last = self._polled.get(record.id)
        if last is not None and time.monotonic() - last < RUNNING_POLL_SECONDS:
            await self._cull(record, current)
            return
        self._polled[record.id] = time.monotonic()
        status = await self.lifecycle.poll(record)
        if status.phase != LaunchPhase.RUNNING:
            words = status.reason or f"the launcher sees it {status.phase}"
            await self.lifecycle.fail(
                record, f"its server is gone: {words}", steps=steps_of(status)
            )
            return
        url = status.url or record.url
        token = self.lifecycle.spec(record).token
        activity = await last_activity(self._http, url, token) if url else None
        if activity is not None:
            record = await self.lifecycle.active(record, activity)
        await self._cull(record, current)

    async def _cull(self, record: SessionRecord, current: datetime) -> None:
        due = self.lifecycle.hibernate_at(record)
        if due is not None and current >= due:
            idle = self.settings.session_idle_hibernate_seconds
            await self.lifecycle.hibernate(
                record, f"idle for {idle:g} s: hibernated", expected=(record.status,)
            )
