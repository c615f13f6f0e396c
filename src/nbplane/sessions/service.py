"""Sessions behind the API, with access checked on every call: a user sees and touches only their
own sessions (another's is "not found"), admins may list and act on all of them.

The service decides what a caller may do; :class:`~nbplane.sessions.lifecycle.SessionLifecycle`
makes every change of status. A session's launch gets the user's variables and, at each start
and resume, the connections granted to the user then, plus ``NBPLANE_URL`` and
``NBPLANE_TOKEN`` (a token of the user, made for this session and revoked when it is deleted) so
``nbplane`` inside the session needs no login.

Users reach a session's server through nbplane, at ``{NBPLANE_PUBLIC_URL}/sessions/{id}/``
(server/routes/proxy.py): only its owner, with their nbplane sign-in; the server's own address
and token stay here (:meth:`SessionService.upstream`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from nbplane._time import now
from nbplane.auth.models import DescribeCaller
from nbplane.auth.service import AuthService
from nbplane.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.sessions.connections import ConnectionService
from nbplane.sessions.launchers.base import SessionLauncher
from nbplane.sessions.lifecycle import ACTIVE, SessionLifecycle, db
from nbplane.sessions.models import (
    CreateSession,
    DescribeResourceClass,
    DescribeSession,
    NewSession,
    SessionRecord,
    SessionStatus,
)
from nbplane.settings import Settings
from nbplane.store import Store

ANONYMOUS = "(anonymous)"
"""The owner of anonymous sessions; no user can have this name with a token."""
ANONYMOUS_CALLER = DescribeCaller(user=ANONYMOUS, admin=False, teams=[], token=None)


NOT_RUNNING = {
    SessionStatus.STARTING: "open it once it runs (GET /api/v1/sessions/{id}/events follows it)",
    SessionStatus.HIBERNATED: "resume it first (`nbplane session resume {id}`)",
    SessionStatus.FAILED: "resume it first (`nbplane session resume {id}`); its reason says why",
}
"""What to do about a session that cannot be opened, by its status."""


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
        metrics: Metrics = UNOBSERVED,
    ) -> None:
        self.settings, self.auth = settings, auth
        self.public_url = (settings.public_url or public_url or "").rstrip("/")
        """Where users reach nbplane (empty: session URLs are paths on the same host)."""
        self.lifecycle = SessionLifecycle(store, settings, launcher, public_url, metrics)
        self.records = store.sessions
        self.users = AuthService(store)
        self.box, self.classes = self.lifecycle.box, self.lifecycle.classes
        self.connections = ConnectionService(store, settings)

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

    async def upstream(self, caller: DescribeCaller, session_id: str) -> tuple[str, str]:
        """Where the caller's running session's server answers, and its token: for its owner
        only. An admin may stop another's session but not open it: its pages would run on
        nbplane's own address with the admin's sign-in."""
        record = await self.visible(caller, session_id)
        if record.owner != caller.user or record.anonymous != is_anonymous(caller):
            raise Forbidden(
                f"session {session_id} is {record.owner}'s: only its owner opens it (an admin "
                "may hibernate or delete it)",
                field="session_id",
            )
        if record.status != SessionStatus.RUNNING or record.url is None:
            raise Conflict(
                f"session {session_id} is {record.status}, not running: "
                + NOT_RUNNING.get(record.status, "try again in a moment").format(id=session_id),
                field="status",
                status=str(record.status),
            )
        return record.url, self.box.open(record.secrets)["token"]

    def describe(self, record: SessionRecord, viewer: DescribeCaller) -> DescribeSession:
        """The record in words; its URL only for its owner."""
        sealed = self.box.open(record.secrets)
        cls = self.classes.named(record.resource_class)
        owner = record.owner == viewer.user
        live = record.status in ACTIVE and record.url is not None
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
            url=f"{self.public_url}/sessions/{record.id}/" if owner and live else None,
            steps=record.steps,  # type: ignore[arg-type]
            created_at=record.created_at,
            started_at=record.started_at,
            ready_at=record.ready_at,
            last_activity_at=record.last_activity_at,
            hibernated_at=record.hibernated_at,
            hibernate_at=self.lifecycle.hibernate_at(record),
            delete_at=self.lifecycle.delete_at(record),
        )

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
            await self.lifecycle.launcher.check_image(body.image)
        if not anonymous:
            await self.check_limit(caller.user, None)
        session_id = self.lifecycle.launcher.new_id()
        token_name, nbplane_token = await db(self._session_token, caller, session_id, expires_at)
        record = await self.lifecycle.create(
            NewSession(
                id=session_id,
                owner=caller.user,
                anonymous=anonymous,
                resource_class=chosen.name,
                image=body.image,
                directory=body.directory,
                repository=body.repository,
                commit=body.commit,
                secrets=self.box.seal(
                    {
                        "token": secrets.token_urlsafe(32),
                        "nbplane_token": nbplane_token,
                        "environment": body.environment,
                    }
                ),
                token_name=token_name,
                launcher=self.lifecycle.launcher.name,
                expires_at=expires_at,
            )
        )
        try:
            if not anonymous:  # again: of concurrent creates, only the oldest within the limit
                await self.check_limit(caller.user, session_id)
            record = await self._launch(record, caller.teams, refuse_bad_input=True)
        except (InvalidInput, TooManyRequests):  # the request was wrong: leave nothing behind
            await self.lifecycle.delete(record, purge=False)
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

    async def check_limit(self, owner: str, session_id: str | None) -> None:
        """TooManyRequests, naming the sessions to stop, unless ``session_id`` may be active:
        it is among the owner's oldest active sessions within the limit, or it is not active
        yet (or None, not made yet) and there is room for one more."""
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
        if not await self.lifecycle.resume(session_id):
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
        """Launch the starting session with the connections granted to its owner now."""
        if record.anonymous:
            names: list[str] = []
            granted: dict[str, str] = {}
        else:
            names, granted = await db(self.connections.environment, record.owner, teams)
        return await self.lifecycle.launch(record, names, granted, refuse_bad_input)

    # stopping
    async def hibernate(self, caller: DescribeCaller, session_id: str) -> DescribeSession:
        record = await self.visible(caller, session_id)
        if not await self.lifecycle.hibernate(record, "hibernated by its user"):
            current = await db(self.records.get, session_id)
            raise Conflict(
                f"session {session_id} is {current.status}; only a starting or running session "
                "can be hibernated",
                field="status",
            )
        return self.describe(await db(self.records.get, session_id), caller)

    async def delete(self, caller: DescribeCaller, session_id: str, purge: bool) -> None:
        record = await self.visible(caller, session_id)
        if not await self.lifecycle.delete(record, purge):
            raise Conflict(
                f"session {session_id} is being stopped already; try again in a moment",
                field="status",
            )

    async def logs(self, caller: DescribeCaller, session_id: str, tail: int) -> str:
        return await self.lifecycle.logs(await self.visible(caller, session_id), tail)
