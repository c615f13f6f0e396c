"""What the two reuse engines share: warm runners per request key that ran the setup cells once.

A *runner* is whatever runs cells: a kernel (:class:`~nbplane.apis.engines.reuse.ReuseEngine`)
or an IPython shell (:class:`~nbplane.apis.engines.shell.ShellReuseEngine`). For each request key
(notebook and version) the engine keeps runners that ran the notebook's *setup cells* once: every
cell up to and including ``inject_after``. A request takes an idle one, runs only the injected
parameters cell and the cells after it, and the runner's namespace is put back as the setup left
it (see :mod:`nbplane.apis.engines._baseline`) before it serves again, one request at a time per
runner. The setup cells' outputs in the executed notebook are the ones from that first run.

Under load a key grows: when all its runners are busy, a request builds another, up to
``pool_max``; beyond that it waits for one. A runner left idle for ``idle_seconds`` ends, as long
as the key keeps ``pool_min``. Beyond ``max_keys`` keys, the least recently used idle key ends.

A runner is discarded, and rebuilt by a later request, when it dies, when a request on it times
out or is cancelled (it was interrupted mid-cell, so its state is unknown), when its state cannot
be put back, when a setup cell fails, or when the notebook's setup cells change under the same key.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nbplane.apis.engines.base import (
    Engine,
    ExecutionRequest,
    KernelStartError,
    Run,
    Stopped,
    Stopper,
    cell_source,
)

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass
class Warm(Generic[R]):
    """A runner that ran the setup cells, with those cells as they came out."""

    runner: R
    setup_cells: list[dict[str, Any]]
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class KeyState(Generic[R]):
    """The warm runners of one request key."""

    digest: str
    idle: list[Warm[R]] = field(default_factory=list)
    """Ready to serve, the most recently used last (taken first)."""
    size: int = 0
    """Runners of the key: idle, serving or being built."""
    busy: int = 0
    """Requests holding or waiting for a runner."""
    building: int = 0
    """Runners running the setup cells now (at most one at a time)."""
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False
    timer: asyncio.TimerHandle | None = None


class WarmEngine(Engine, Generic[R]):
    """Warm runners per key that ran the setup cells once; requests run only their own cells.

    Subclasses say how to start a runner, run the setup cells in it (and keep the state they
    left), run a request's cells (and put the state back), and end one.
    """

    def __init__(
        self,
        *,
        pool_min: int = 1,
        pool_max: int = 4,
        idle_seconds: float = 60.0,
        max_keys: int = 16,
        setup_timeout: float = 600.0,
    ) -> None:
        """``pool_min``/``pool_max``: warm runners a key keeps when idle / has at most.
        ``setup_timeout``: seconds the setup cells may take (a request's timeout does not stop
        them)."""
        super().__init__()
        if pool_max < 1 or max_keys < 1 or not 0 <= pool_min <= pool_max:
            raise ValueError("need 0 <= pool_min <= pool_max, pool_max >= 1 and max_keys >= 1")
        self.pool_min, self.pool_max, self.idle_seconds = pool_min, pool_max, idle_seconds
        self.max_keys = max_keys
        self.setup_timeout = setup_timeout
        self._building: set[asyncio.Future[tuple[Warm[R] | None, Run]]] = set()
        self._keys: dict[str, KeyState[R]] = {}

    @abstractmethod
    async def _new_runner(self, request: ExecutionRequest) -> R:
        """A started runner for ``request`` (KernelStartError if it cannot start)."""

    @abstractmethod
    async def _setup(self, runner: R, setup: Run, cells: list[int], stopper: Stopper) -> bool:
        """Run the setup ``cells`` and keep the state they left; whether ``runner`` may serve."""

    @abstractmethod
    async def _serve(self, runner: R, run: Run, cells: list[int], stopper: Stopper) -> bool:
        """Run a request's ``cells`` and put the state back; whether ``runner`` may serve again."""

    @abstractmethod
    def _alive(self, runner: R) -> bool: ...

    @abstractmethod
    def _dispose(self, runner: R) -> None:
        """End ``runner`` in the background."""

    async def _stop(self) -> None:
        for building in list(self._building):
            building.cancel()
        if self._building:
            await asyncio.wait(set(self._building))
        for state in list(self._keys.values()):
            self._retire(state)
        self._keys.clear()

    def warm_count(self, key: str) -> int:
        """Runners of ``key`` now (idle, serving or being built): for tests and metrics."""
        state = self._keys.get(key)
        return 0 if state is None else state.size

    def _state_for(self, run: Run) -> KeyState[R]:
        request = run.request
        setup = [
            (cell.get("cell_type"), cell_source(cell))
            for cell in request.notebook["cells"][: request.inject_after + 1]
        ]
        digest = hashlib.sha256(
            json.dumps([request.kernel_name, request.inject_after, setup]).encode()
        ).hexdigest()
        state = self._keys.get(request.key)
        if state is not None and state.digest != digest:
            self._retire(state)  # the notebook changed under the same key
            state = None
        if state is None:
            state = KeyState[R](digest)
            self._keys[request.key] = state
            self._evict(keep=state)
        state.last_used = time.monotonic()
        return state

    def _evict(self, keep: KeyState[R]) -> None:
        idle = [s for s in self._keys.values() if s.busy == 0 and s is not keep]
        while len(self._keys) > self.max_keys and idle:
            oldest = min(idle, key=lambda s: s.last_used)
            idle.remove(oldest)
            self._retire(oldest)

    def _retire(self, state: KeyState[R]) -> None:
        """End the idle runners of ``state`` now, busy ones when their request ends."""
        state.retired = True
        for key, known in list(self._keys.items()):
            if known is state:
                del self._keys[key]
        if state.timer is not None:
            state.timer.cancel()
        while state.idle:
            self._dispose(state.idle.pop().runner)
        state.freed.set()

    async def _take(self, state: KeyState[R]) -> Warm[R] | None:
        """An idle warm runner, or None when this request is to build one (room was made for
        it); waits while one is being built (setup cells can be heavy: one build at a time per
        key), or while the key has ``pool_max`` runners and all are busy."""
        while True:
            if state.idle:
                return state.idle.pop()
            if state.size < self.pool_max and not state.building:
                state.size += 1
                state.building += 1
                return None
            state.freed.clear()
            await state.freed.wait()

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        began = time.perf_counter()
        state = self._state_for(run)
        state.busy += 1
        try:
            warm = await stopper.guard(self._take(state))
        except BaseException:
            state.busy -= 1
            raise
        holds_slot, keep = True, False  # whoever holds the slot gives it back (with a runner)
        try:
            if warm is not None and not self._alive(warm.runner):
                self._dispose(warm.runner)
                warm = None
                state.building += 1  # its slot builds a replacement
            if warm is None:
                building = asyncio.ensure_future(self._warm_up(run.request))
                self._building.add(building)
                building.add_done_callback(self._building.discard)
                building.add_done_callback(functools.partial(self._build_ended, state))
                try:
                    warm, setup = await stopper.guard(asyncio.shield(building))
                except BaseException:
                    # Stopped (or cancelled) while the setup cells run: they go on, and the
                    # runner they warm serves the next request.
                    holds_slot = False
                    building.add_done_callback(functools.partial(self._built, state))
                    if building.cancelled() and not stopper.future.done():
                        run.fail("kernel_died", "the engine stopped while the setup cells ran")
                        return
                    raise
                cells = run.notebook["cells"]
                cells[: run.parameters_cell] = setup.notebook["cells"][: setup.parameters_cell]
                run.logs.extend(setup.logs)
                if warm is None:
                    run.status, run.error = setup.status, setup.error
                    return
            else:
                cells = run.notebook["cells"]
                for index, cell in enumerate(warm.setup_cells):
                    cells[index] = dict(cell)
            began = run.timed("engine_start", began)
            keep = await self._serve(warm.runner, run, run.code_cells(run.parameters_cell), stopper)
            run.timed("cells", began)
        finally:
            state.busy -= 1
            if holds_slot:
                self._put_back(state, warm if keep else None, discard=warm)

    def _put_back(self, state: KeyState[R], warm: Warm[R] | None, discard: Warm[R] | None) -> None:
        """Give a slot back: ``warm`` if it may serve again, else none (and end ``discard``)."""
        if warm is not None and (state.retired or not self.started or not self._alive(warm.runner)):
            warm = None
        if discard is not None and discard is not warm:
            self._dispose(discard.runner)
        if warm is None:
            state.size -= 1
        else:
            warm.last_used = time.monotonic()
            state.idle.append(warm)
            self._schedule_shrink(state)
        state.freed.set()

    def _build_ended(self, state: KeyState[R], _: object) -> None:
        state.building -= 1
        state.freed.set()

    def _built(
        self, state: KeyState[R], building: asyncio.Future[tuple[Warm[R] | None, Run]]
    ) -> None:
        """A warm-up whose request had stopped ended: its runner goes to the key."""
        warm = None
        if not building.cancelled():
            if building.exception() is None:
                warm = building.result()[0]
            else:
                log.error("warming a runner failed", exc_info=building.exception())
        self._put_back(state, warm, discard=warm)

    def _schedule_shrink(self, state: KeyState[R]) -> None:
        if state.timer is None and state.size > self.pool_min:
            loop = asyncio.get_running_loop()
            state.timer = loop.call_later(self.idle_seconds, self._shrink, state)

    def _shrink(self, state: KeyState[R]) -> None:
        """End the runners idle for ``idle_seconds``, the oldest first, down to ``pool_min``."""
        state.timer = None
        if state.retired:
            return
        horizon = time.monotonic() - self.idle_seconds
        while state.size > self.pool_min and state.idle and state.idle[0].last_used <= horizon:
            state.size -= 1
            self._dispose(state.idle.pop(0).runner)
        if state.size > self.pool_min and state.idle:
            loop = asyncio.get_running_loop()
            delay = max(state.idle[0].last_used - horizon, 0.01)
            state.timer = loop.call_later(delay, self._shrink, state)

    async def _warm_up(self, request: ExecutionRequest) -> tuple[Warm[R] | None, Run]:
        """Start a runner and run the setup cells in it (None and the failure if they fail).

        Bounded by ``setup_timeout``, not by the request's timeout: a slow setup (loading a
        model) would otherwise be killed by every request and never finish.
        """
        setup = Run.prepare(request)
        stopper = Stopper(self.setup_timeout, None)
        runner: R | None = None
        try:
            runner = await stopper.guard(self._new_runner(request))
            cells = setup.code_cells(0, setup.parameters_cell)
            if await self._setup(runner, setup, cells, stopper) and not setup.failed:
                snapshot = [dict(cell) for cell in setup.notebook["cells"][: setup.parameters_cell]]
                return Warm(runner, snapshot), setup
        except Stopped:
            pass
        except KernelStartError as exc:
            setup.fail("kernel_failed_to_start", f"kernel {request.kernel_name!r}: {exc}")
        except BaseException:
            if runner is not None:
                self._dispose(runner)
            raise
        finally:
            stopper.close()
        if stopper.reason is not None:  # the setup's own limit, not the request's
            previous = setup.error or {}
            setup.status = "timed_out"
            setup.error = {
                **previous,
                "reason": "timeout",
                "message": f"the setup cells did not finish within {self.setup_timeout:g} s",
                "cell": previous.get("cell"),
            }
        if runner is not None:
            self._dispose(runner)
        return None, setup
