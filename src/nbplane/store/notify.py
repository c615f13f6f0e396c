"""Signals about executions, within one process and between the processes sharing the database.

A write that queues an execution, ends it or asks it to stop also signals it (:class:`Signal`),
so that nobody polls for it: after the commit, to this process's subscribers and waiters at
once; and on PostgreSQL to every other process, by a ``NOTIFY`` sent in the write's own
transaction (it is delivered when the write commits, and never for a write rolled back). Each
process LISTENs on one connection of its own, in a thread of its own that reconnects when the
connection drops; after each (re)connection everyone gets a ``resync`` signal, since anything
may have happened while nobody listened. On SQLite, or while that connection is down, signals
from other processes do not arrive: :attr:`ExecutionSignals.listening` says so, and the worker
and the waiters poll instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import Connection, Engine, func, select

from nbplane.apis.models import DescribeExecution

log = logging.getLogger(__name__)

SignalKind = Literal["queued", "final", "cancel", "resync"]
"""``queued``: an execution waits for a worker; ``final``: one got its final status;
``cancel``: a running one is asked to stop; ``resync``: signals may have been missed."""
CHANNEL = "nbplane_executions"
"""The PostgreSQL channel; a payload is ``<sender> <kind> <execution id>``."""
LISTEN_TICK = 1.0
"""Seconds the listening thread waits for a notification before it checks it should stop."""
RECONNECT_SECONDS = (0.1, 5.0)
"""First and longest wait before listening again after the connection dropped (doubling)."""
LISTENER_NAME = "nbplane-signals"
"""The listening connections' ``application_name`` (in ``pg_stat_activity``)."""
CONNECTION = {
    "application_name": LISTENER_NAME,
    "keepalives": 1,  # TCP keepalives: a peer that vanished silently is noticed
    "keepalives_idle": 10,
    "keepalives_interval": 5,
}
"""libpq options of a listening connection."""


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    execution_id: str | None = None
    record: DescribeExecution | None = None
    """With ``final`` in the process that ended it: the final record (no query to read it)."""


class Watch:
    """A waiter for one execution's final status, in its event loop: ``event`` is set when a
    ``final`` (or ``resync``) signal arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self._record: DescribeExecution | None = None

    def arrive(self, record: DescribeExecution | None) -> None:
        if record is not None:
            self._record = record
        self.event.set()

    def take(self) -> DescribeExecution | None:
        """The final record if one arrived in-process (else None: read it); clears ``event``,
        so that a signal from now on sets it again."""
        self.event.clear()
        record, self._record = self._record, None
        return record


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody there waits any more
        loop.call_soon_threadsafe(callback, *args)


class ExecutionSignals:
    """One per store (so one per process): sends the signals of the store's writes and hands
    the signals of every process to subscribers (the worker) and watches (waiters), each in its
    own event loop. Thread-safe: writes signal from worker threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sender = uuid.uuid4().hex[:12]
        """Marks this process's notifications, which its listener skips (delivered already)."""
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, Callable[[Signal], None]]] = []
        self._watches: dict[str, set[Watch]] = {}
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self.listening = False
        """True while signals from other processes arrive (PostgreSQL, listening); else whoever
        waits for another process polls."""

    def notify(self, connection: Connection, signals: list[Signal]) -> None:
        """In a write's transaction: tell the other processes once it commits (PostgreSQL)."""
        if signals and connection.dialect.name == "postgresql":
            payloads = [f"{self.sender} {signal.kind} {signal.execution_id}" for signal in signals]
            connection.execute(select(*(func.pg_notify(CHANNEL, sent) for sent in payloads)))

    def deliver(self, signals: list[Signal]) -> None:
        """After a write committed: tell this process's subscribers, and the waiters of those
        executions' ends."""
        for signal in signals:
            self._deliver(signal)

    def _deliver(self, signal: Signal) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            if signal.kind == "resync":
                watches = [watch for group in self._watches.values() for watch in group]
            elif signal.kind == "final" and signal.execution_id is not None:
                watches = list(self._watches.get(signal.execution_id, ()))
            else:
                watches = []
        for loop, callback in subscribers:
            _post(loop, callback, signal)
        for watch in watches:
            _post(watch.loop, watch.arrive, signal.record)

    def subscribe(self, callback: Callable[[Signal], None]) -> Callable[[], None]:
        """Call ``callback`` in the running event loop with every signal; returns the
        unsubscribe function."""
        entry = (asyncio.get_running_loop(), callback)
        with self._lock:
            self._subscribers.append(entry)
        self._listen_once_asked()

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(entry)

        return unsubscribe

    @contextlib.contextmanager
    def watch(self, execution_id: str) -> Iterator[Watch]:
        """A :class:`Watch` of the execution's end while the block runs (in an event loop)."""
        watch = Watch(asyncio.get_running_loop())
        with self._lock:
            self._watches.setdefault(execution_id, set()).add(watch)
        self._listen_once_asked()
        try:
            yield watch
        finally:
            with self._lock:
                group = self._watches.get(execution_id)
                if group is not None:
                    group.discard(watch)
                    if not group:
                        del self._watches[execution_id]

    def close(self) -> None:
        """Stop listening (at once: the thread is woken by a notification of its own)."""
        self._closed.set()
        listener = self._listener
        if listener is None or not listener.is_alive():
            return
        with contextlib.suppress(Exception), self.engine.begin() as connection:
            connection.execute(select(func.pg_notify(CHANNEL, f"{self.sender} stop -")))
        listener.join(LISTEN_TICK * 2)

    def _listen_once_asked(self) -> None:
        """Start the listening thread with the first subscriber or watch (PostgreSQL only)."""
        if self.engine.dialect.name != "postgresql" or self._listener is not None:
            return
        with self._lock:
            if self._listener is not None or self._closed.is_set():
                return
            self._listener = threading.Thread(target=self._listen, name=LISTENER_NAME, daemon=True)
        self._listener.start()

    def _listen(self) -> None:
        import psycopg

        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        options: dict[str, Any] = {**cparams, **CONNECTION}
        delay = RECONNECT_SECONDS[0]
        while not self._closed.is_set():
            try:
                with psycopg.connect(*cargs, autocommit=True, **options) as listen:
                    listen.execute(f"LISTEN {CHANNEL}")
                    self.listening, delay = True, RECONNECT_SECONDS[0]
                    self._deliver(Signal("resync"))
                    while not self._closed.is_set():
                        for notification in listen.notifies(timeout=LISTEN_TICK):
                            if self._closed.is_set():
                                break
                            self._received(notification.payload)
            except psycopg.Error as exc:
                if not self._closed.is_set():
                    log.warning("not listening to other processes (polling): %s", exc)
            finally:
                self.listening = False
            self._closed.wait(delay)
            delay = min(delay * 2, RECONNECT_SECONDS[1])

    def _received(self, payload: str) -> None:
        sender, kind, execution_id = [*payload.split(" ", 2), "", ""][:3]
        if sender != self.sender and kind in get_args(SignalKind) and kind != "resync":
            self._deliver(Signal(kind, execution_id))  # type: ignore[arg-type]
