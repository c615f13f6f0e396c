"""The fast engine: a warm kernel per notebook version runs only each request's cells.

For each request key (notebook and version) the engine keeps ``warm_per_key`` kernels that have
run the notebook's *setup cells* once: every cell up to and including ``inject_after`` (imports,
model loading, the ``parameters`` cell with its defaults). A request then runs only the injected
parameters cell and the cells after it, in one of those kernels, one request at a time per kernel.
The setup cells' outputs in the executed notebook are the ones from that first run.

Every request starts from the state the setup cells left: after each request, whether it
completed or raised, the kernel's namespace is put back as it was (see
:mod:`nbplane.apis.engines._baseline`): names the request added go, names it rebound (a parameter, a
shadowed builtin such as ``len = 0``) get their setup value again, and IPython's output caches
and last exception are reset. A kernel whose state cannot be put back is discarded. What does
persist between requests on the same warm kernel — the price of the speed — is what the
notebook's own cells do to objects in place (``cache.append(x)`` on a list the setup made) and
to the process: imported modules, open files and connections, environment variables, the
working directory, threads, memory. Use the isolated engine when that matters.

The request cells go to the kernel as one execute request (see :mod:`nbplane.apis.engines._incell`),
which keeps them out of IPython's history. Cells with a top-level ``await``, or kernels that
cannot import nbplane, get one request per cell instead, entered in the history like notebook
cells (IPython reads a trailing ``;`` from there); putting the state back empties ``In`` and
``Out`` of them again, and only the execution counter keeps counting.

A warm kernel is discarded, and rebuilt by the next request, when it dies, when a request on it
times out or is cancelled (it was interrupted mid-cell, so its state is unknown), when its state
cannot be put back, when a setup cell fails, or when the notebook's setup cells change under the
same key.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbplane.apis.engines._baseline import MODULE as BASELINE_MODULE
from nbplane.apis.engines.base import (
    Engine,
    ExecutionRequest,
    KernelStartError,
    Run,
    Stopped,
    Stopper,
    cell_source,
)
from nbplane.apis.engines.kernel import Kernel
from nbplane.apis.engines.pool import KernelProvider

log = logging.getLogger(__name__)

_BASELINE_SOURCE = (Path(__file__).parent / "_baseline.py").read_text(encoding="utf-8")
KEEP_STATE = (
    f"exec(compile({_BASELINE_SOURCE!r}, '<nbplane baseline>', 'exec'), "
    f"__import__('sys').modules.setdefault({BASELINE_MODULE!r}, "
    f"__import__('types').ModuleType({BASELINE_MODULE!r})).__dict__)\n"
    f"__import__({BASELINE_MODULE!r}).keep()\n"
)
"""Run once after the setup cells: remembers the state every request starts from."""
RESTORE_STATE = f"__import__({BASELINE_MODULE!r}).restore()"
"""Evaluated after every request's cells (a parameter cannot shadow ``__import__``: names
starting with ``__`` are refused); if it fails, the kernel is discarded."""


@dataclass
class WarmKernel:
    """A kernel that ran the setup cells, with those cells as they came out."""

    kernel: Kernel
    setup_cells: list[dict[str, object]]


@dataclass
class KeyState:
    """The warm kernels of one request key; ``slots`` holds each kernel, or None to build."""

    digest: str
    slots: asyncio.Queue[WarmKernel | None]
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0
    retired: bool = False


class ReuseEngine(Engine):
    """Warm kernels per key that ran the setup cells once; requests run only their own cells."""

    name = "reuse"

    def __init__(
        self,
        warm_per_key: int = 1,
        *,
        max_keys: int = 16,
        setup_timeout: float = 600.0,
        forked: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        """``max_keys``: beyond that many keys, the least recently used idle key's kernels end.
        ``setup_timeout``: seconds the setup cells may take (a request's timeout does not stop
        them)."""
        super().__init__()
        if warm_per_key < 1 or max_keys < 1:
            raise ValueError("warm_per_key and max_keys must be at least 1")
        self.warm_per_key = warm_per_key
        self.max_keys = max_keys
        self.setup_timeout = setup_timeout
        self._building: set[asyncio.Future[tuple[WarmKernel | None, Run]]] = set()
        self.provider = KernelProvider(forked=forked, start_timeout=start_timeout)
        self._keys: dict[str, KeyState] = {}

    async def _start(self) -> None:
        await self.provider.start()

    async def _stop(self) -> None:
        for building in list(self._building):
            building.cancel()
        if self._building:
            await asyncio.wait(set(self._building))
        for state in list(self._keys.values()):
            self._retire(state)
        self._keys.clear()
        await self.provider.stop()

    def _state_for(self, run: Run) -> KeyState:
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
            state = KeyState(digest, asyncio.Queue())
            for _ in range(self.warm_per_key):
                state.slots.put_nowait(None)
            self._keys[request.key] = state
            self._evict(keep=state)
        state.last_used = time.monotonic()
        return state

    def _evict(self, keep: KeyState) -> None:
        idle = [s for s in self._keys.values() if s.busy == 0 and s is not keep]
        while len(self._keys) > self.max_keys and idle:
            oldest = min(idle, key=lambda s: s.last_used)
            idle.remove(oldest)
            self._retire(oldest)

    def _retire(self, state: KeyState) -> None:
        """End the idle kernels of ``state`` now, busy ones when their request ends."""
        state.retired = True
        for key, known in list(self._keys.items()):
            if known is state:
                del self._keys[key]
        while not state.slots.empty():
            warm = state.slots.get_nowait()
            if warm is not None:
                self.provider.dispose_soon(warm.kernel)

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        state = self._state_for(run)
        state.busy += 1
        try:
            warm = await stopper.guard(state.slots.get())
        except BaseException:
            state.busy -= 1
            raise
        holds_slot, keep = True, False  # whoever holds the slot puts a kernel (or None) back
        try:
            if warm is not None and not warm.kernel.alive:
                self.provider.dispose_soon(warm.kernel)
                warm = None
            if warm is None:
                building = asyncio.ensure_future(self._warm_up(run.request))
                self._building.add(building)
                building.add_done_callback(self._building.discard)
                try:
                    warm, setup = await stopper.guard(asyncio.shield(building))
                except BaseException:
                    # Stopped (or cancelled) while the setup cells run: they go on, and the
                    # kernel they warm serves the next request.
                    holds_slot = False
                    building.add_done_callback(functools.partial(self._built, state))
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
            request_cells = run.code_cells(run.parameters_cell)
            keep = await warm.kernel.run(
                run, request_cells, stopper, together=True, then=RESTORE_STATE
            )
        finally:
            state.busy -= 1
            if holds_slot:
                self._put_back(state, warm if keep else None, discard=warm)

    def _put_back(
        self, state: KeyState, warm: WarmKernel | None, discard: WarmKernel | None
    ) -> None:
        """Return a slot: ``warm`` if it may serve again, else None (and end ``discard``)."""
        if warm is not None and (state.retired or not self.started or not warm.kernel.alive):
            warm = None
        if discard is not None and discard is not warm:
            self.provider.dispose_soon(discard.kernel)
        if not state.retired:
            state.slots.put_nowait(warm)

    def _built(
        self, state: KeyState, building: asyncio.Future[tuple[WarmKernel | None, Run]]
    ) -> None:
        """A warm-up whose request had stopped ended: its kernel goes to the slot."""
        warm = None
        if not building.cancelled():
            if building.exception() is None:
                warm = building.result()[0]
            else:
                log.error("warming a kernel failed", exc_info=building.exception())
        self._put_back(state, warm, discard=warm)

    async def _warm_up(self, request: ExecutionRequest) -> tuple[WarmKernel | None, Run]:
        """Start a kernel and run the setup cells in it (None and the failure if they fail).

        Bounded by ``setup_timeout``, not by the request's timeout: a slow setup (loading a
        model) would otherwise be killed by every request and never finish.
        """
        setup = Run.prepare(request)
        stopper = Stopper(self.setup_timeout, None)
        kernel: Kernel | None = None
        try:
            kernel = await stopper.guard(self.provider.start_kernel(request.kernel_name))
            usable = await kernel.run(setup, setup.code_cells(0, setup.parameters_cell), stopper)
            if usable and not setup.failed and not await kernel.run_quietly(KEEP_STATE, stopper):
                setup.fail(
                    "unsupported_kernel",
                    "the reuse engine could not keep the kernel's state after the setup cells "
                    "(it needs an IPython kernel)",
                )
            if usable and not setup.failed:
                snapshot = [dict(cell) for cell in setup.notebook["cells"][: setup.parameters_cell]]
                return WarmKernel(kernel, snapshot), setup
        except Stopped:
            pass
        except KernelStartError as exc:
            setup.fail("kernel_failed_to_start", f"kernel {request.kernel_name!r}: {exc}")
        except BaseException:
            if kernel is not None:
                self.provider.dispose_soon(kernel)
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
        if kernel is not None:
            self.provider.dispose_soon(kernel)
        return None, setup
