"""Fakes of nbplane's extension points, for tests that need no kernel, process or cluster.

As httpx ships ``MockTransport``, nbplane ships a fake of each place where an implementation is
plugged in: :class:`FakeExecutor` (a :class:`~nbplane.deployments.executors.base.JobExecutor`),
:class:`FakeLauncher` (a :class:`~nbplane.sessions.launchers.base.SessionLauncher`),
:class:`FakeEngine` (an :class:`~nbplane.apis.engines.base.Engine`), :class:`FakeLease` (a
:class:`~nbplane.platform.lease.Lease`) and :class:`FakeAuthenticator` (an identity source a
test fills). Each is built from the
settings like the real ones, records what it was asked (``tickets``, ``specs``, ``requests``
and the ``stopped`` states) and runs the plan a test gives it: the next call goes as the first
planned :class:`Plan` says, and once the plan is used up every call goes as ``default`` says.
So the code around the extension point (the deployments reconciler, the session service, the
API worker) runs in-process, in milliseconds, with the outcome chosen by the test::

    executor = FakeExecutor(settings)
    executor.plan(Plan.fail("OOMKilled", exit_code=137))
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nbplane.apis.engines.base import Engine, Run, Stopper
from nbplane.auth.authenticators.base import Authenticator, Identity, Presented
from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus, JobExecutor
from nbplane.errors import NbplaneError, Unauthorized
from nbplane.platform.lease import CONTROL_LEASE, Lease
from nbplane.sessions.launchers.base import (
    LaunchPhase,
    LaunchStatus,
    SessionLauncher,
    SessionSpec,
)
from nbplane.settings import Settings

__all__ = [
    "FakeAuthenticator",
    "FakeEngine",
    "FakeExecutor",
    "FakeLauncher",
    "FakeLease",
    "Plan",
]

Ending = Literal["succeed", "fail", "hang", "refuse"]


@dataclass(frozen=True)
class Plan:
    """How one call of a fake goes.

    ``succeed``: it works (an engine's output is ``output``; an executor's process exits 0).
    ``fail``: it goes wrong for the user, for ``reason`` (a failed execution, an exit code, a
    session whose server failed). ``hang``: it runs until stopped, cancelled or timed out.
    ``refuse``: starting it raises :class:`~nbplane.errors.NbplaneError` with ``reason``.
    """

    ending: Ending
    reason: str | None = None
    output: Any = None
    exit_code: int | None = None

    @classmethod
    def succeed(cls, output: Any = None) -> Plan:
        return cls("succeed", output=output, exit_code=0)

    @classmethod
    def fail(cls, reason: str, *, exit_code: int = 1) -> Plan:
        return cls("fail", reason=reason, exit_code=exit_code)

    @classmethod
    def hang(cls) -> Plan:
        return cls("hang")

    @classmethod
    def refuse(cls, reason: str) -> Plan:
        return cls("refuse", reason=reason)


class _Planned:
    """The plan queue the three fakes share."""

    def __init__(self, default: Plan) -> None:
        self.default = default
        self._plans: deque[Plan] = deque()
        self._count = itertools.count(1)

    def plan(self, *plans: Plan) -> None:
        """The next calls go as these plans say, in order."""
        self._plans.extend(plans)

    def _next(self) -> tuple[str, Plan]:
        plan = self._plans.popleft() if self._plans else self.default
        if plan.ending == "refuse":
            raise NbplaneError(plan.reason or "refused by the fake")
        return f"fake-{next(self._count)}", plan


class FakeExecutor(_Planned, JobExecutor):
    """Starts nothing: each execution "runs" as planned (default: until ``finish`` or ``stop``).

    An execution planned to succeed or fail has ended by its first ``poll``, with exit code 0 or
    the plan's; as the real job records its own result through the server, a test that wants a
    recorded result writes it itself (the reconciler fails an execution that ended without one).
    """

    name: ClassVar[str] = "fake"

    def __init__(self, settings: Settings, default: Plan | None = None) -> None:
        JobExecutor.__init__(self, settings)
        _Planned.__init__(self, default or Plan.hang())
        self.tickets: list[ExecutionTicket] = []
        self.stopped: list[dict[str, Any]] = []
        """The state of every ``stop`` call, in order."""
        self.discarded: list[str] = []
        """The execution id of every ``discard`` call, in order."""
        self._status: dict[str, ExecutorStatus] = {}
        self._logs: dict[str, str] = {}

    async def start(self, ticket: ExecutionTicket) -> dict[str, Any]:
        key, plan = self._next()
        self.tickets.append(ticket)
        ended = plan.ending != "hang"
        self._status[key] = ExecutorStatus(
            running=not ended,
            exit_code=plan.exit_code if ended else None,
            reason=plan.reason if plan.ending == "fail" else None,
        )
        return {"fake": key}

    def finish(
        self, ticket: ExecutionTicket, exit_code: int = 0, reason: str | None = None
    ) -> None:
        """End the process of ``ticket`` now, with this exit code."""
        key = self._key(ticket)
        self._status[key] = ExecutorStatus(running=False, exit_code=exit_code, reason=reason)

    def say(self, ticket: ExecutionTicket, text: str) -> None:
        """What the place the execution ran keeps as its output (read by ``logs``)."""
        self._logs[self._key(ticket)] = text

    def _key(self, ticket: ExecutionTicket) -> str:
        return f"fake-{self.tickets.index(ticket) + 1}"

    async def poll(self, state: dict[str, Any]) -> ExecutorStatus:
        return self._status.get(state.get("fake", ""), ExecutorStatus(running=False))

    async def stop(self, state: dict[str, Any]) -> None:
        self.stopped.append(state)
        key = state.get("fake", "")
        if self._status.get(key, ExecutorStatus(running=False)).running:
            self._status[key] = ExecutorStatus(running=False, exit_code=-15, reason="stopped")

    async def logs(self, state: dict[str, Any]) -> str | None:
        return self._logs.get(state.get("fake", ""))

    async def discard(self, execution_id: str) -> None:
        self.discarded.append(execution_id)


class FakeLauncher(_Planned, SessionLauncher):
    """Starts no server: a started session is ready at once (default), fails with the planned
    reason, or stays starting until stopped. Its URL is one where nothing answers (port 9), so a
    session's activity is never seen."""

    name: ClassVar[str] = "fake"

    def __init__(self, settings: Settings, default: Plan | None = None) -> None:
        SessionLauncher.__init__(self, settings)
        _Planned.__init__(self, default or Plan.succeed())
        self.specs: list[SessionSpec] = []
        """The spec of every ``start`` (a resume too), in order."""
        self.hibernated: list[dict[str, Any]] = []
        self.stopped: list[dict[str, Any]] = []
        self.purged: list[str] = []
        """Ids of the sessions stopped with their workspace."""
        self._status: dict[str, LaunchStatus] = {}

    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        key, plan = self._next()
        self.specs.append(spec)
        self._status[key] = {
            "succeed": LaunchStatus(
                LaunchPhase.RUNNING, url=f"http://127.0.0.1:9/{key}/", ready=True
            ),
            "fail": LaunchStatus(LaunchPhase.FAILED, reason=plan.reason),
            "hang": LaunchStatus(LaunchPhase.STARTING),
        }[plan.ending]
        return {"fake": key}

    def crash(self, session_id: str, reason: str) -> None:
        """The server of the session's latest start fails now, for ``reason``."""
        latest = max(i for i, spec in enumerate(self.specs) if spec.id == session_id)
        self._status[f"fake-{latest + 1}"] = LaunchStatus(LaunchPhase.FAILED, reason=reason)

    async def poll(self, spec: SessionSpec, state: dict[str, Any]) -> LaunchStatus:
        return self._status.get(state.get("fake", ""), LaunchStatus(LaunchPhase.STOPPED))

    async def hibernate(self, spec: SessionSpec, state: dict[str, Any]) -> dict[str, Any]:
        self.hibernated.append(state)
        self._status.pop(state.get("fake", ""), None)
        return {}

    async def stop(self, spec: SessionSpec, state: dict[str, Any], *, purge: bool) -> None:
        self.stopped.append(state)
        self._status.pop(state.get("fake", ""), None)
        if purge:
            self.purged.append(spec.id)

    async def logs(self, spec: SessionSpec, state: dict[str, Any], tail: int) -> str:
        return f"fake server {state.get('fake')} of session {spec.id}\n"


class FakeEngine(_Planned, Engine):
    """Runs no kernel: an execution completes with the planned output (default: none), fails
    with the planned reason as an exception in its first cell, or hangs until it is cancelled
    or times out. ``running`` is set while an execution is inside the engine."""

    name = "fake"

    def __init__(self, settings: Settings | None = None, default: Plan | None = None) -> None:
        Engine.__init__(self)
        _Planned.__init__(self, default or Plan.succeed())
        self.settings = settings
        self.requests: list[Any] = []
        """The :class:`~nbplane.apis.engines.base.ExecutionRequest` of every execution."""
        self.running = asyncio.Event()

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        self.requests.append(run.request)
        _, plan = self._next()
        self.running.set()
        try:
            if plan.ending == "hang":
                await stopper.guard(asyncio.Event().wait())
            elif plan.ending == "fail":
                cell = run.parameters_cell
                run.fail_exception(cell, {"ename": "FakeError", "evalue": plan.reason or ""})
            elif plan.output is not None:
                run.output, run.has_output = plan.output, True
        finally:
            self.running.clear()


class FakeLease(Lease):
    """A lease kept in memory: fakes given the same ``place`` (a dict, name -> (holder,
    expiry)) contend for it as replicas would; ``clock`` is the time expiries are compared with
    (monotonic seconds by default). With ``unreachable`` set every call raises, as when the
    database or the API server is gone; ``calls`` counts the calls of ``acquire``."""

    def __init__(
        self,
        holder: str,
        duration: float = 8.0,
        *,
        place: dict[str, tuple[str, float]] | None = None,
        name: str = CONTROL_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, holder, duration)
        self.place = place if place is not None else {}
        self.clock = clock
        self.unreachable = False
        self.calls = 0

    async def acquire(self) -> bool:
        self.calls += 1
        self._reach()
        current = self.clock()
        held = self.place.get(self.name)
        if held is not None and held[0] != self.holder and held[1] > current:
            return False
        self.place[self.name] = (self.holder, current + self.duration)
        return True

    async def release(self) -> None:
        self._reach()
        held = self.place.get(self.name)
        if held is not None and held[0] == self.holder:
            del self.place[self.name]

    @property
    def holder_now(self) -> str | None:
        """Who holds the lease at this moment of ``clock``."""
        held = self.place.get(self.name)
        return held[0] if held is not None and held[1] > self.clock() else None

    def _reach(self) -> None:
        if self.unreachable:
            raise NbplaneError("the fake lease's place is unreachable")


FAKE_LOGIN_HEADER = "X-Nbplane-Fake-Login"


@dataclass
class FakeAuthenticator(Authenticator):
    """An identity source a test fills (an :class:`~nbplane.auth.authenticators.base.
    Authenticator`, ``NBPLANE_AUTHENTICATOR=nbplane.testing:FakeAuthenticator``): a request
    whose ``X-Nbplane-Fake-Login`` header holds a key of ``identities`` is that identity; a
    key that is not there is refused, as an identity source refuses a stale sign-in.
    ``presented`` records what each request showed."""

    name: ClassVar[str] = "fake"
    identifies_requests: ClassVar[bool] = True
    identities: dict[str, Identity] = field(default_factory=dict, init=False)
    presented: list[Presented] = field(default_factory=list, init=False)

    def identify(self, presented: Presented) -> Identity | None:
        self.presented.append(presented)
        key = presented.headers.get(FAKE_LOGIN_HEADER.lower())
        if key is None:
            return None
        if key not in self.identities:
            raise Unauthorized(f"the fake identity source knows no login {key!r}")
        return self.identities[key]
