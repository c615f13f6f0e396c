"""Leases kept in nbplane's database: each a row taken or renewed by one compare-and-set, so
replicas sharing the database agree on a single holder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nbplane._time import now
from nbplane.platform.lease import Lease
from nbplane.store.tables import leases


class LeaseStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, holder: str, current: datetime, until: datetime) -> bool:
        """Make ``holder`` hold ``name`` until ``until``, if it holds it already or nobody does
        at ``current``; False when another holder's expiry has not passed."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    or_(leases.c.holder == holder, leases.c.expires_at <= current),
                )
                .values(
                    # the same statement reads the old holder: taken over means acquired now
                    acquired_at=case(
                        (leases.c.holder == holder, leases.c.acquired_at), else_=current
                    ),
                    holder=holder,
                    renewed_at=current,
                    expires_at=until,
                )
            ).rowcount
        if renewed:
            return True
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(leases).values(
                        name=name,
                        holder=holder,
                        acquired_at=current,
                        renewed_at=current,
                        expires_at=until,
                    )
                )
        except IntegrityError:  # it exists, held by another
            return False
        return True

    def holder(self, name: str, current: datetime) -> str | None:
        """Who holds ``name`` at ``current`` (None: nobody, or an expired holder)."""
        with self.engine.connect() as connection:
            found: str | None = connection.execute(
                select(leases.c.holder).where(leases.c.name == name, leases.c.expires_at > current)
            ).scalar()
        return found

    def release(self, name: str, holder: str) -> None:
        """Drop the lease if ``holder`` holds it."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(leases).where(leases.c.name == name, leases.c.holder == holder)
            )


class DatabaseLease(Lease):
    """A lease in nbplane's database (the ``leases`` table); ``clock`` gives the wall-clock time
    every replica compares expiries with."""

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        holder: str,
        duration: float,
        clock: Callable[[], datetime] = now,
    ) -> None:
        super().__init__(name, holder, duration)
        self.store = store
        self.clock = clock
        self._call: asyncio.Future[bool] | None = None

    async def acquire(self) -> bool:
        current = self.clock()
        until = current + timedelta(seconds=self.duration)
        call = asyncio.to_thread(self.store.acquire, self.name, self.holder, current, until)
        self._call = asyncio.ensure_future(call)
        # a caller that gives up (timeout, stop) leaves the thread running: close() waits for it
        return await asyncio.shield(self._call)

    async def release(self) -> None:
        await self.close()  # an attempt still running would take the lease again
        await asyncio.to_thread(self.store.release, self.name, self.holder)

    async def close(self) -> None:
        """Wait for an attempt still running in its thread, so that it is done with its
        connection before the store closes."""
        if self._call is not None:
            await asyncio.gather(self._call, return_exceptions=True)
