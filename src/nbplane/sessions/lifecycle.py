"""The one writer of a session's status. The API (:mod:`nbplane.sessions.service`) and the loop
(:mod:`nbplane.sessions.reconciler`) decide *when*; every change itself goes through
:class:`SessionLifecycle`, which checks it against ``TRANSITIONS``, drives the launcher where the
change needs it (start, hibernate, stop) and wakes whoever watches (the loop) after it::

    (created) -> starting -> running
    starting, running  -> stopping -> hibernated | (deleted)
    hibernated, failed -> stopping -> (deleted)
    hibernated, failed -> starting           (resume)
    starting, running, stopping, hibernated -> failed

Each change is a conditional UPDATE of the record (``SessionStore.transition``): the status must
still be one the caller saw, so an API call on one replica and the loop's culling on another
never both hibernate or delete a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from nbplane._time import now
from nbplane.auth.service import AuthService
from nbplane.errors import Conflict, InvalidInput, NbplaneError
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.platform.secrets import SecretBox
from nbplane.sessions.launchers.base import LaunchStatus, SessionLauncher, SessionSpec
from nbplane.sessions.models import NewSession, SessionRecord, SessionStatus
from nbplane.sessions.resource_classes import ResourceClasses, load_resource_classes
from nbplane.settings import Settings
from nbplane.store import Store

log = logging.getLogger("nbplane.sessions")

T = TypeVar("T")
STARTING, RUNNING, STOPPING, HIBERNATED, FAILED = (
    SessionStatus.STARTING,
    SessionStatus.RUNNING,
    SessionStatus.STOPPING,
    SessionStatus.HIBERNATED,
    SessionStatus.FAILED,
)
ACTIVE = (STARTING, RUNNING)
"""A server is up or coming up: what the per-user limit counts."""
TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = {
    STARTING: frozenset({RUNNING, STOPPING, FAILED}),
    RUNNING: frozenset({STOPPING, FAILED}),
    STOPPING: frozenset({HIBERNATED, FAILED}),
    HIBERNATED: frozenset({STARTING, STOPPING, FAILED}),
    FAILED: frozenset({STARTING, STOPPING}),
}
"""Every status change allowed; a session leaves ``stopping`` also by being deleted."""
LOG_TAIL_LINES = 20
"""Lines of the server's output a failure's reason ends with."""


async def db(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call off the event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)


def steps_of(status: LaunchStatus) -> list[dict[str, Any]]:
    """A launch's steps as the record keeps them."""
    return [
        {"name": step.name, "status": str(step.status), "detail": step.detail}
        for step in status.steps
    ]


def words(exc: Exception) -> str:
    """An error for the session's reason: ours by its message, others by their repr."""
    return str(getattr(exc, "message", None) or repr(exc))


class SessionLifecycle:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        launcher: SessionLauncher,
        public_url: str | None,
        metrics: Metrics = UNOBSERVED,
    ) -> None:
        self.metrics = metrics
        self.records = store.sessions
        self.users = AuthService(store)
        self.settings, self.launcher = settings, launcher
        self.box = SecretBox(settings)
        self.classes = ResourceClasses(load_resource_classes(settings.session_resource_classes))
        self.public_url = (settings.session_public_url or public_url or "").rstrip("/") or None
        self.on_change: list[Callable[[], None]] = []
        """Callbacks run after a session changes (wake the loop)."""

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    async def _move(
        self,
        record: SessionRecord | str,
        expected: Iterable[SessionStatus],
        to: SessionStatus,
        **values: Any,
    ) -> bool:
        """``to`` if the status is still one of ``expected``: True for the one caller that
        moved it."""
        expected = tuple(expected)
        if not expected:
            return False
        session_id = record if isinstance(record, str) else record.id
        for status in expected:
            if to not in TRANSITIONS[status]:
                raise Conflict(
                    f"session {session_id}: {status} -> {to} is not a session transition",
                    field="status",
                )
        return await db(self.records.transition, session_id, expected, status=to, **values)

    async def _update(self, record: SessionRecord, **values: Any) -> bool:
        """Change what the session's status says about it, not the status, if it is still the
        record's."""
        return await db(self.records.transition, record.id, (record.status,), **values)

    # the timing rules
    def hibernate_at(self, record: SessionRecord) -> datetime | None:
        """When a running session idle since its last activity is hibernated."""
        idle = self.settings.session_idle_hibernate_seconds
        if record.status != RUNNING or not idle:
            return None
        active = max(record.last_activity_at or record.started_at, record.started_at)
        return active + timedelta(seconds=idle)

    def delete_at(self, record: SessionRecord) -> datetime | None:
        """When the session is deleted: anonymous at its end, hibernated after a while."""
        after = self.settings.session_hibernated_delete_seconds
        moments = [record.expires_at] if record.expires_at else []
        if record.status == HIBERNATED and after and record.hibernated_at:
            moments.append(record.hibernated_at + timedelta(seconds=after))
        return min(moments) if moments else None

    # the launcher's view
    def spec(self, record: SessionRecord, granted: dict[str, str] | None = None) -> SessionSpec:
        """What the launcher needs; ``granted`` (connection variables) only when starting."""
        sealed = self.box.open(record.secrets)
        cls = self.classes.named(record.resource_class)
        environment = {**(granted or {}), **sealed["environment"]}
        if self.public_url:
            environment["NBPLANE_URL"] = self.public_url
        if sealed.get("nbplane_token"):
            environment["NBPLANE_TOKEN"] = sealed["nbplane_token"]
        return SessionSpec(
            id=record.id,
            user=record.owner,
            resource_class=record.resource_class,
            cpu=cls.cpu if cls else None,
            memory=cls.memory if cls else None,
            image=record.image,
            token=sealed["token"],
            environment=environment,
            directory=record.directory,
            repository=record.repository,
            commit=record.commit,
        )

    async def poll(self, record: SessionRecord) -> LaunchStatus:
        return await self.launcher.poll(self.spec(record), record.launcher_state or {})

    async def logs(self, record: SessionRecord, tail: int) -> str:
        if not record.launcher_state:
            return ""
        return await self.launcher.logs(self.spec(record), record.launcher_state, tail)

    # starting
    async def create(self, new: NewSession) -> SessionRecord:
        """The new session's record, ``starting`` before its launch."""
        return await db(self.records.create, new, STARTING)

    async def resume(self, session_id: str) -> bool:
        """Back to ``starting`` from hibernated or failed, to be launched again; False if it
        was neither."""
        return await self._move(
            session_id,
            (HIBERNATED, FAILED),
            STARTING,
            started_at=now(),
            ready=False,
            ready_at=None,
            reason=None,
            launcher_state=None,
            steps=[],
            hibernated_at=None,
        )

    async def launch(
        self,
        record: SessionRecord,
        connections: list[str],
        granted: dict[str, str],
        refuse_bad_input: bool = False,
    ) -> SessionRecord:
        """Hand the starting session to the launcher with the granted ``connections`` (names)
        and their variables; a start that fails ends it ``failed`` (a launcher's
        ``InvalidInput`` is raised instead with ``refuse_bad_input``)."""
        try:
            state = await self.launcher.start(self.spec(record, granted))
        except NbplaneError as exc:
            if refuse_bad_input and isinstance(exc, InvalidInput):
                raise
            await self.fail(record, f"could not start: {exc.message}", logs=False)
        except Exception as exc:
            log.exception("starting session %s failed", record.id)
            await self.fail(record, f"could not start: {exc!r}", logs=False)
        else:
            await self._update(record, launcher_state=state, connections=connections)
        self._changed()
        return await db(self.records.get, record.id)

    async def progress(self, record: SessionRecord, status: LaunchStatus) -> None:
        """A starting session's steps and address as its launcher now sees them."""
        steps = steps_of(status)
        if steps != record.steps or status.url != record.url:
            await self._update(record, steps=steps, url=status.url)

    async def ready(self, record: SessionRecord, status: LaunchStatus) -> None:
        """``running``: its server answers."""
        moment = now()
        moved = await self._move(
            record,
            (STARTING,),
            RUNNING,
            ready=True,
            ready_at=moment,
            last_activity_at=moment,
            url=status.url,
            steps=steps_of(status),
            reason=None,
        )
        if moved:
            seconds = (moment - record.started_at).total_seconds()
            self.metrics.session_start.observe(max(seconds, 0.0))

    async def active(self, record: SessionRecord, activity: datetime) -> SessionRecord:
        """The running session with its server's last activity, if later than the record's."""
        if record.last_activity_at is not None and activity <= record.last_activity_at:
            return record
        if await self._update(record, last_activity_at=activity):
            return record.model_copy(update={"last_activity_at": activity})
        return record

    # stopping
    async def hibernate(
        self, record: SessionRecord, reason: str, expected: tuple[SessionStatus, ...] = ACTIVE
    ) -> bool:
        """Stop the server and keep its workspace, if its status is one of ``expected``; False
        if another caller got there first."""
        claimed = await self._move(record, expected, STOPPING, action="hibernate", ready=False)
        if claimed:
            await self._finish_hibernate(record, reason)
        return claimed

    async def _finish_hibernate(self, record: SessionRecord, reason: str) -> None:
        try:
            state = await self.launcher.hibernate(self.spec(record), record.launcher_state or {})
        except Exception as exc:
            log.exception("hibernating session %s failed", record.id)
            await self._move(
                record,
                (STOPPING,),
                FAILED,
                action=None,
                reason=f"could not hibernate: {words(exc)}",
            )
        else:
            await self._move(
                record,
                (STOPPING,),
                HIBERNATED,
                action=None,
                launcher_state=state,
                hibernated_at=now(),
                reason=reason,
                steps=[],
            )
        self._changed()

    async def delete(
        self,
        record: SessionRecord,
        purge: bool,
        expected: tuple[SessionStatus, ...] = (*ACTIVE, HIBERNATED, FAILED),
    ) -> bool:
        """Stop the server for good, revoke its token, forget it, if its status is one of
        ``expected``; False if another caller is stopping it already."""
        claimed = await self._move(
            record, expected, STOPPING, action="purge" if purge else "delete", ready=False
        )
        if claimed:
            await self._finish_delete(record, purge)
        return claimed

    async def _finish_delete(self, record: SessionRecord, purge: bool) -> None:
        try:
            await self.launcher.stop(self.spec(record), record.launcher_state or {}, purge=purge)
        except Exception as exc:  # kept as stopping: the loop tries again
            log.exception("stopping session %s failed", record.id)
            await db(
                self.records.transition,
                record.id,
                (STOPPING,),
                reason=f"could not stop yet: {words(exc)}; retrying",
            )
            return
        if record.token_name:
            await db(self.users.revoke_token, record.token_name)
        await db(self.records.delete, record.id)
        self._changed()

    async def stop_again(self, record: SessionRecord) -> None:
        """Finish the hibernate or delete a replica that died left half done, if no other
        replica took it over since ``record`` was read."""
        claimed = await db(
            self.records.transition, record.id, (STOPPING,), updated_at=record.updated_at
        )
        if not claimed:
            return
        if record.action == "hibernate":
            await self._finish_hibernate(record, "hibernated")
        else:
            await self._finish_delete(record, purge=record.action == "purge")

    async def fail(
        self,
        record: SessionRecord,
        reason: str,
        logs: bool = True,
        steps: list[dict[str, Any]] | None = None,
    ) -> bool:
        """End the session ``failed``, the server's last words in the reason, and stop what is
        left of it (the workspace is kept: resume starts it again). Only if its status is still
        the record's: a session hibernated or resumed meanwhile is not failed by a stale look."""
        state = record.launcher_state or {}
        spec = self.spec(record)
        if logs and state:
            try:
                tail = (await self.launcher.logs(spec, state, LOG_TAIL_LINES)).strip()
            except Exception as exc:
                tail = f"(no logs: {exc!r})"
            if tail:
                reason = f"{reason}\n--- last lines of its output:\n{tail}"
        failed = await self._move(
            record,
            (record.status,) if FAILED in TRANSITIONS[record.status] else (),
            FAILED,
            action=None,
            ready=False,
            reason=reason,
            steps=record.steps if steps is None else steps,
        )
        if failed and state:
            try:
                await self.launcher.stop(spec, state, purge=False)
            except Exception:
                log.exception("stopping failed session %s", record.id)
        self._changed()
        return failed
