"""Sessions behind the API, with access checked on every call: a user sees and touches only their
own sessions (another's is "not found"), admins may list and act on all of them.

Every change of status is a conditional UPDATE of the record (``SessionStore.transition``), so
an API call on one replica and the plane's culling on another never both hibernate or delete a
session. A session hands the launcher a :class:`SessionSpec` rebuilt from its record: the
server's token, the user's variables, and, at each start and resume, the connections granted
to the user then, plus ``NBPLANE_URL`` and ``NBPLANE_TOKEN`` (a token of the user, made for
this session and revoked when it is deleted) so ``nbplane`` inside the session needs no login.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from nbplane._time import now
from nbplane.auth.models import DescribeCaller
from nbplane.auth.service import AuthService
from nbplane.errors import (
    Conflict,
    InvalidInput,
    NbplaneError,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from nbplane.platform.secrets import SecretBox
from nbplane.sessions.connections import ConnectionService
from nbplane.sessions.launchers.base import SessionLauncher, SessionSpec
from nbplane.sessions.models import (
    CreateSession,
    DescribeResourceClass,
    DescribeSession,
    SessionRecord,
    SessionStatus,
)
from nbplane.sessions.resource_classes import ResourceClasses, load_resource_classes
from nbplane.settings import Settings
from nbplane.store import Store

log = logging.getLogger("nbplane.sessions")

ANONYMOUS = "(anonymous)"
"""The owner of anonymous sessions; no user can have this name with a token."""
ANONYMOUS_CALLER = DescribeCaller(user=ANONYMOUS, admin=False, teams=[], token=None)
LOG_TAIL_LINES = 20
"""Lines of the server's output a failure's reason ends with."""
ACTIVE = (SessionStatus.STARTING, SessionStatus.RUNNING)
T = TypeVar("T")


async def db(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call off the event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)


def is_anonymous(caller: DescribeCaller) -> bool:
    return caller.user == ANONYMOUS and not caller.admin and caller.token is None


class SessionService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        launcher: SessionLauncher,
        public_url: str | None,
        auth: bool = True,
    ) -> None:
        self.settings, self.launcher, self.auth = settings, launcher, auth
        self.records = store.sessions
        self.users = AuthService(store)
        self.box = SecretBox(settings)
        self.classes = ResourceClasses(load_resource_classes(settings.session_resource_classes))
        self.connections = ConnectionService(store, settings)
        self.public_url = (settings.session_public_url or public_url or "").rstrip("/") or None
        self.on_change: list[Callable[[], None]] = []
        """Callbacks run after a session changes (wake the plane)."""

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    # reading
    def resource_classes(self, caller: DescribeCaller) -> list[DescribeResourceClass]:
        return self.classes.offered(caller)

    async def visible(self, caller: DescribeCaller, session_id: str) -> SessionRecord:
        """The session if the caller may see it: its owner, an admin, or, for an anonymous
        session, whoever knows its id."""
        found = await db(self.records.find, session_id)
        if found is None or not (
            caller.admin or (found.owner == caller.user and found.anonymous == is_anonymous(caller))
        ):
            raise NotFound(f"no session {session_id!r}", field="session_id")
        return found

    async def get(self, caller: DescribeCaller, session_id: str) -> DescribeSession:
        return self.describe(await self.visible(caller, session_id), caller)

    async def list_sessions(self, caller: DescribeCaller, everyone: bool) -> list[DescribeSession]:
        if is_anonymous(caller):
            raise Unauthorized("listing sessions needs a token", field="authorization")
        if everyone and not caller.admin:
            raise NotFound("only admins may list everyone's sessions", field="all")
        found = await db(self.records.list_sessions, None if everyone else caller.user)
        if not everyone:
            found = [record for record in found if not record.anonymous]
        return [self.describe(record, caller) for record in found]

    def describe(self, record: SessionRecord, viewer: DescribeCaller) -> DescribeSession:
        """The record in words; the server's token only for its owner."""
        sealed = self.box.open(record.secrets)
        cls = next((c for c in self.classes.classes if c.name == record.resource_class), None)
        owner = record.owner == viewer.user
        live = record.status in ACTIVE and record.url is not None
        token = sealed["token"] if owner and live else None
        return DescribeSession(
            id=record.id,
            user=record.owner,
            anonymous=record.anonymous,
            status=record.status,
            ready=record.ready and record.status == SessionStatus.RUNNING,
            reason=record.reason,
            resource_class=record.resource_class,
            cpu=cls.cpu if cls else None,
            memory=cls.memory if cls else None,
            image=record.image,
            directory=record.directory,
            repository=record.repository,
            commit=record.commit,
            environment=sorted(sealed["environment"]),
            connections=record.connections,
            launcher=record.launcher,
            url=f"{record.url}?token={token}" if token and record.url else None,
            server_url=record.url if live else None,
            token=token,
            steps=record.steps,  # type: ignore[arg-type]
            created_at=record.created_at,
            started_at=record.started_at,
            ready_at=record.ready_at,
            last_activity_at=record.last_activity_at,
            hibernated_at=record.hibernated_at,
            hibernate_at=self.hibernate_at(record),
            delete_at=self.delete_at(record),
        )

    def hibernate_at(self, record: SessionRecord) -> datetime | None:
        idle = self.settings.session_idle_hibernate_seconds
        if record.status != SessionStatus.RUNNING or not idle:
            return None
        active = max(record.last_activity_at or record.started_at, record.started_at)
        return active + timedelta(seconds=idle)

    def delete_at(self, record: SessionRecord) -> datetime | None:
        after = self.settings.session_hibernated_delete_seconds
        moments = [record.expires_at] if record.expires_at else []
        if record.status == SessionStatus.HIBERNATED and after and record.hibernated_at:
            moments.append(record.hibernated_at + timedelta(seconds=after))
        return min(moments) if moments else None

    # creating and starting
    async def create(self, caller: DescribeCaller, body: CreateSession) -> DescribeSession:
        anonymous = is_anonymous(caller)
        expires_at = None
        if anonymous:
            taken = await db(self.records.count, True)
            if taken >= self.settings.session_anonymous_max:
                raise Conflict(
                    f"all {self.settings.session_anonymous_max} anonymous sessions are taken; "
                    "try again later, or sign in",
                    field="anonymous",
                )
            expires_at = now() + timedelta(seconds=self.settings.session_anonymous_lifetime_seconds)
        chosen = self.classes.choose(caller, body.resource_class)
        if body.image is not None:
            await self.launcher.check_image(body.image)
        session_id = secrets.token_hex(8)
        if not anonymous:
            await self.check_limit(caller.user, session_id)
        token_name, nbplane_token = await db(self._session_token, caller, session_id, expires_at)
        record = await db(
            self.records.create,
            {
                "id": session_id,
                "owner": caller.user,
                "anonymous": anonymous,
                "resource_class": chosen.name,
                "image": body.image,
                "directory": body.directory,
                "repository": body.repository,
                "commit": body.commit,
                "secrets": self.box.seal(
                    {
                        "token": secrets.token_urlsafe(32),
                        "nbplane_token": nbplane_token,
                        "environment": body.environment,
                    }
                ),
                "token_name": token_name,
                "connections": [],
                "status": SessionStatus.STARTING,
                "launcher": self.launcher.name,
                "steps": [],
                "ready": False,
                "expires_at": expires_at,
            },
        )
        try:
            if not anonymous:  # again: of concurrent creates, only the oldest within the limit
                await self.check_limit(caller.user, session_id)
            record = await self._launch(record, caller.teams, refuse_bad_input=True)
        except (InvalidInput, TooManyRequests):  # the request was wrong: leave nothing behind
            await self.delete_record(record, purge=False)
            raise
        return self.describe(record, caller)

    def max_sessions(self, user: str) -> int:
        """How many sessions ``user`` may have starting or running: their own limit, set by an
        admin, else NBPLANE_SESSION_MAX_PER_USER."""
        try:
            own = self.users.user(user).max_sessions
        except NotFound:  # a caller with no user record (no auth)
            own = None
        return self.settings.session_max_per_user if own is None else own

    async def check_limit(self, owner: str, session_id: str) -> None:
        """TooManyRequests, naming the sessions to stop, unless ``session_id`` may be active:
        it is among the owner's oldest active sessions within the limit, or it is not active
        yet and there is room for one more."""
        limit = await db(self.max_sessions, owner)
        records = await db(self.records.list_sessions, owner, ACTIVE, False)
        active = [record.id for record in records]
        if session_id in active[:limit] or (session_id not in active and len(active) < limit):
            return
        others = [found for found in active if found != session_id]
        raise TooManyRequests(
            f"{owner} may have {limit} session(s) starting or running at once and has "
            f"{len(others)}: {', '.join(others) or 'none'}. Stop one first with `nbplane session "
            "stop ID` (or keep its files: `nbplane session hibernate ID`), i.e. DELETE "
            "/api/v1/sessions/ID or POST /api/v1/sessions/ID/hibernate; an admin can raise the "
            f"limit with `nbplane user limit {owner} --max-sessions N`",
            field="sessions",
            sessions=others,
            limit=limit,
        )

    def _session_token(
        self, caller: DescribeCaller, session_id: str, expires_at: datetime | None
    ) -> tuple[str | None, str | None]:
        """A token of the caller for ``nbplane`` inside the session, expiring with it; none for
        anonymous sessions and servers without auth."""
        if not self.auth or is_anonymous(caller):
            return None, None
        name = f"session-{session_id}"
        try:
            _, token = self.users.create_token(name, caller.user, expires_at)
        except NotFound:  # a caller with no user record (no auth): nothing to speak for
            return None, None
        return name, token

    async def resume(self, caller: DescribeCaller, session_id: str) -> DescribeSession:
        record = await self.visible(caller, session_id)
        if not record.anonymous and record.status not in ACTIVE:
            await self.check_limit(record.owner, session_id)
        resumed = await db(
            self.records.transition,
            session_id,
            (SessionStatus.HIBERNATED, SessionStatus.FAILED),
            status=SessionStatus.STARTING,
            started_at=now(),
            ready=False,
            ready_at=None,
            reason=None,
            launcher_state=None,
            steps=[],
            hibernated_at=None,
        )
        if not resumed:
            raise Conflict(
                f"session {session_id} is {record.status}; only a hibernated or failed session "
                "can be resumed",
                field="status",
            )
        teams = caller.teams if record.owner == caller.user else await db(self._teams, record)
        record = await self._launch(await db(self.records.get, session_id), teams)
        return self.describe(record, caller)

    def _teams(self, record: SessionRecord) -> list[str]:
        if record.anonymous:
            return []
        try:
            return self.users.user(record.owner).teams
        except NotFound:
            return []

    async def _launch(
        self, record: SessionRecord, teams: list[str], refuse_bad_input: bool = False
    ) -> SessionRecord:
        """Hand the session to the launcher; a start that fails ends the session ``failed``
        (a launcher's ``InvalidInput`` is raised instead with ``refuse_bad_input``)."""
        if record.anonymous:
            names: list[str] = []
            granted: dict[str, str] = {}
        else:
            names, granted = await db(self.connections.environment, record.owner, teams)
        spec = self.spec(record, granted)
        try:
            state = await self.launcher.start(spec)
        except NbplaneError as exc:
            if refuse_bad_input and isinstance(exc, InvalidInput):
                raise
            await self.fail(record, f"could not start: {exc.message}", logs=False)
        except Exception as exc:
            log.exception("starting session %s failed", record.id)
            await self.fail(record, f"could not start: {exc!r}", logs=False)
        else:
            await db(
                self.records.transition,
                record.id,
                (SessionStatus.STARTING,),
                launcher_state=state,
                connections=names,
            )
        self._changed()
        return await db(self.records.get, record.id)

    def spec(self, record: SessionRecord, granted: dict[str, str] | None = None) -> SessionSpec:
        """What the launcher needs; ``granted`` (connection variables) only when starting."""
        sealed = self.box.open(record.secrets)
        cls = next((c for c in self.classes.classes if c.name == record.resource_class), None)
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

    # stopping
    async def hibernate(self, caller: DescribeCaller, session_id: str) -> DescribeSession:
        record = await self.visible(caller, session_id)
        if not await self.hibernate_record(record, "hibernated by its user"):
            current = await db(self.records.get, session_id)
            raise Conflict(
                f"session {session_id} is {current.status}; only a starting or running session "
                "can be hibernated",
                field="status",
            )
        return self.describe(await db(self.records.get, session_id), caller)

    async def hibernate_record(
        self, record: SessionRecord, reason: str, expected: tuple[SessionStatus, ...] = ACTIVE
    ) -> bool:
        """Stop the server and keep its workspace, if its status is one of ``expected``; False
        if another caller got there first."""
        claimed = await db(
            self.records.transition,
            record.id,
            expected,
            status=SessionStatus.STOPPING,
            action="hibernate",
            ready=False,
        )
        if not claimed:
            return False
        await self.finish_hibernate(record, reason)
        return True

    async def finish_hibernate(self, record: SessionRecord, reason: str) -> None:
        try:
            state = await self.launcher.hibernate(self.spec(record), record.launcher_state or {})
        except Exception as exc:
            log.exception("hibernating session %s failed", record.id)
            await db(
                self.records.transition,
                record.id,
                (SessionStatus.STOPPING,),
                status=SessionStatus.FAILED,
                action=None,
                reason=f"could not hibernate: {getattr(exc, 'message', repr(exc))}",
            )
        else:
            await db(
                self.records.transition,
                record.id,
                (SessionStatus.STOPPING,),
                status=SessionStatus.HIBERNATED,
                action=None,
                launcher_state=state,
                hibernated_at=now(),
                reason=reason,
                steps=[],
            )
        self._changed()

    async def delete(self, caller: DescribeCaller, session_id: str, purge: bool) -> None:
        record = await self.visible(caller, session_id)
        if not await self.delete_record(record, purge):
            raise Conflict(
                f"session {session_id} is being stopped already; try again in a moment",
                field="status",
            )

    async def delete_record(
        self,
        record: SessionRecord,
        purge: bool,
        expected: tuple[SessionStatus, ...] = (
            *ACTIVE,
            SessionStatus.HIBERNATED,
            SessionStatus.FAILED,
        ),
    ) -> bool:
        """Stop the server for good, revoke its token, forget it, if its status is one of
        ``expected``; False if another caller is stopping it already."""
        claimed = await db(
            self.records.transition,
            record.id,
            expected,
            status=SessionStatus.STOPPING,
            action="purge" if purge else "delete",
            ready=False,
        )
        if claimed:
            await self.finish_delete(record, purge)
        return claimed

    async def finish_delete(self, record: SessionRecord, purge: bool) -> None:
        try:
            await self.launcher.stop(self.spec(record), record.launcher_state or {}, purge=purge)
        except Exception as exc:  # kept as stopping: the plane tries again
            log.exception("stopping session %s failed", record.id)
            await db(
                self.records.transition,
                record.id,
                (SessionStatus.STOPPING,),
                reason=f"could not stop yet: {getattr(exc, 'message', repr(exc))}; retrying",
            )
            return
        if record.token_name:
            await db(self.users.revoke_token, record.token_name)
        await db(self.records.delete, record.id)
        self._changed()

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
        failed = await db(
            self.records.transition,
            record.id,
            (record.status,),
            status=SessionStatus.FAILED,
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

    async def logs(self, caller: DescribeCaller, session_id: str, tail: int) -> str:
        record = await self.visible(caller, session_id)
        if not record.launcher_state:
            return ""
        return await self.launcher.logs(self.spec(record), record.launcher_state, tail)
