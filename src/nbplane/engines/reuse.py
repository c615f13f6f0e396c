"""The fast engine: a warm kernel per notebook version runs only each request's cells.

For each request key (notebook and version) the engine keeps ``warm_per_key`` kernels that have
run the notebook's *setup cells* once: every cell up to and including ``inject_after`` (imports,
model loading, the ``parameters`` cell with its defaults). A request then runs only the injected
parameters cell and the cells after it, in one of those kernels, one request at a time per kernel.
The setup cells' outputs in the executed notebook are the ones from that first run.

What persists between requests on the same warm kernel — the price of the speed:

- the namespace built by the setup cells, *and whatever the request cells assign*: a request
  cell that reassigns or mutates a name (``model = ...``, ``cache.append(x)``) changes it for every
  later request on that kernel; the parameters cell rebinds the parameters each time, but a name
  a request cell creates is still there for the next request;
- everything else in the process: imported modules, open files and connections, environment
  variables, the working directory, threads, memory.

Request cells run with ``store_history=False``: their results are not kept in ``Out``/``_`` and
the execution counter does not grow. Use the isolated engine when executions must not see each
other.

A warm kernel is discarded, and rebuilt by the next request, when it dies, when a request on it
times out or is cancelled (it was interrupted mid-cell, so its state is unknown), when a setup
cell fails, or when the notebook's setup cells change under the same key. An exception in a
request cell keeps the kernel (whatever the cell changed before raising stays, as above).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

from nbplane.engines.base import Engine, Run, Stopper, cell_source
from nbplane.engines.kernels import Kernel, KernelProvider


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
        forked: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        """``max_keys``: beyond that many keys, the least recently used idle key's kernels end."""
        super().__init__()
        if warm_per_key < 1 or max_keys < 1:
            raise ValueError("warm_per_key and max_keys must be at least 1")
        self.warm_per_key = warm_per_key
        self.max_keys = max_keys
        self.provider = KernelProvider(forked=forked, start_timeout=start_timeout)
        self._keys: dict[str, KeyState] = {}

    async def _start(self) -> None:
        await self.provider.start()

    async def _stop(self) -> None:
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
        keep = False
        try:
            if warm is not None and not warm.kernel.alive:
                self.provider.dispose_soon(warm.kernel)
                warm = None
            if warm is None:
                warm = await self._warm_up(run, stopper)
                if warm is None:
                    return
            else:
                cells = run.notebook["cells"]
                for index, cell in enumerate(warm.setup_cells):
                    cells[index] = dict(cell)
            request_cells = run.code_cells(run.parameters_cell)
            keep = await warm.kernel.run(run, request_cells, stopper, store_history=False)
        finally:
            state.busy -= 1
            if keep and warm is not None and not state.retired and self.started:
                state.slots.put_nowait(warm)
            else:
                if warm is not None:
                    self.provider.dispose_soon(warm.kernel)
                if not state.retired:
                    state.slots.put_nowait(None)

    async def _warm_up(self, run: Run, stopper: Stopper) -> WarmKernel | None:
        """Start a kernel and run the setup cells in it, recording them into ``run``."""
        kernel = await stopper.guard(self.provider.start_kernel(run.request.kernel_name))
        setup = run.code_cells(0, run.parameters_cell)
        try:
            usable = await kernel.run(run, setup, stopper)
        except BaseException:
            self.provider.dispose_soon(kernel)
            raise
        if not usable or run.failed:
            self.provider.dispose_soon(kernel)
            return None
        snapshot = [dict(cell) for cell in run.notebook["cells"][: run.parameters_cell]]
        return WarmKernel(kernel, snapshot)
