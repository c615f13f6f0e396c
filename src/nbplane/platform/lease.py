"""One holder at a time for the background loops: a lease, and the object that runs the loops
only while holding it.

A :class:`Lease` is a named record in a place every replica sees (a ``leases`` row in nbplane's
database, a Kubernetes ``Lease``): whoever holds it until an expiry moves that expiry on before it
passes, and anyone may take it once it has passed. :class:`LeasedLoops` tries every
``renew_seconds``, starts the loops when it gets the lease and stops them when it loses it. A
holder that cannot renew stops its loops one renewal before its expiry, so another replica,
which takes over only after the expiry, never runs them at the same time; a holder that stops
cleanly releases the lease, and another takes over at its next try. Expiries are wall-clock
times, so the replicas' clocks must agree to well within a renewal (NTP does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from nbplane.errors import ConfigError

log = logging.getLogger("nbplane.lease")

CONTROL_LEASE = "nbplane-control"
"""The lease of the control loops (scheduler, monitor, notifier, retention, sessions)."""


def replica_name() -> str:
    """This process among the replicas: host, process id, and a nonce against reused ids."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease(ABC):
    """A named lease one ``holder`` takes for ``duration`` seconds at a time."""

    def __init__(self, name: str, holder: str, duration: float) -> None:
        self.name = name
        self.holder = holder
        self.duration = duration

    @abstractmethod
    async def acquire(self) -> bool:
        """Take the lease when it is free or expired, or renew it when ours: it is then ours
        until ``duration`` seconds from now. False when another holder has it; an exception
        when the place it is kept cannot be reached (whether it is ours is then unknown)."""

    @abstractmethod
    async def release(self) -> None:
        """Give the lease up, if ours, so another holder takes it at its next try."""

    async def close(self) -> None:  # noqa: B027 - most leases hold no client
        """Release clients."""


class Loops(Protocol):
    """Background loops started and stopped as a whole (the deployments' and sessions'
    reconcilers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LeasedLoops:
    """Runs the loops ``make`` builds only while ``lease`` is held; a fresh set each time it is
    gained. ``holding`` and ``last_beat`` (``time.monotonic()`` of the last attempt that reached
    the lease's place, whatever it answered) say whether the loops are alive, for readiness."""

    def __init__(
        self, lease: Lease, make: Callable[[], Sequence[Loops]], renew_seconds: float
    ) -> None:
        if not 0 < renew_seconds * 2 <= lease.duration:
            raise ConfigError(
                f"the lease is renewed every {renew_seconds:g} s but lasts {lease.duration:g} s: "
                "NBPLANE_LEASE_RENEW_SECONDS must be at most half NBPLANE_LEASE_DURATION_SECONDS",
                field="lease_renew_seconds",
            )
        self.lease = lease
        self.make = make
        self.renew_seconds = renew_seconds
        self.holding = False
        self.last_beat = 0.0
        self._loops: list[Loops] = []
        self._deadline = 0.0
        """When, on the monotonic clock, the loops must have stopped unless renewed."""
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether its last answer from the lease's place is recent (within the lease's
        duration): a holder is renewing, a standby is ready to take over. For readiness."""
        return time.monotonic() - self.last_beat <= self.lease.duration

    async def start(self) -> None:
        """Try at once (a lone replica runs its loops before it answers), then keep trying."""
        await self.turn()
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        """Stop the loops, then release the lease: the next holder starts at its next try."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        was_holding = self.holding
        await self._stop_loops()
        try:
            if was_holding:
                await self.lease.release()
        except Exception:  # it expires anyway
            log.warning("could not release the lease %s", self.lease.name, exc_info=True)
        finally:
            await self.lease.close()

    async def _forever(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.turn()
            except Exception:  # the loops failed to start: try again at the next turn
                log.exception("lease %s: starting the loops failed", self.lease.name)
            pause = self.renew_seconds - (time.monotonic() - began)
            if self.holding:
                pause = min(pause, self._deadline - time.monotonic())
            await asyncio.sleep(max(pause, 0.0))

    async def turn(self) -> None:
        """One attempt to take or renew the lease, and what follows from its answer."""
        began = time.monotonic()
        # while holding, an attempt that hangs must not keep the loops running past the deadline
        limit = self._deadline - began if self.holding else self.renew_seconds
        try:
            async with asyncio.timeout(max(limit, 0.0)):
                held: bool | None = await self.lease.acquire()
            self.last_beat = time.monotonic()
        except Exception as exc:
            held = None
            log.warning("lease %s: cannot reach it: %s", self.lease.name, str(exc) or repr(exc))
        if held:
            self._deadline = began + self.lease.duration - self.renew_seconds
            if not self.holding:
                await self._start_loops()
        elif self.holding and (held is False or time.monotonic() >= self._deadline):
            log.warning(
                "lease %s: lost (%s); stopping the loops",
                self.lease.name,
                "another replica holds it" if held is False else "not renewed in time",
            )
            await self._stop_loops()

    async def _start_loops(self) -> None:
        log.info("lease %s: held by %s; starting the loops", self.lease.name, self.lease.holder)
        self.holding = True
        self._loops = []
        try:
            for loops in self.make():
                self._loops.append(loops)
                await loops.start()
        except BaseException:
            await self._stop_loops()
            raise

    async def _stop_loops(self) -> None:
        loops, self._loops = self._loops, []
        self.holding = False
        for each in reversed(loops):
            try:
                await each.stop()
            except Exception:  # the others must stop all the same
                log.exception("stopping loops failed")
