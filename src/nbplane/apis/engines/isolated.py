"""The isolated kernel engine: every execution runs in a fresh Jupyter kernel of its own
(``isolated`` does the same on IPython shells, see :mod:`nbplane.apis.engines.shell`).

Nothing one execution does (variables, imports, files it changed in memory) can be seen by the
next, because each gets a kernel that never ran anything before, and that kernel is killed
afterwards. To keep kernel start-up off the request path, a :class:`KernelPool` keeps
``pool_size`` kernels per kernel name started ahead of time and starts a replacement whenever one
is taken; for ``python3`` the kernels are forked from a template process (see
:mod:`nbplane.apis.engines.forked`), which is what makes tens of executions per second possible.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from nbplane.apis.engines.base import Engine, Run, Stopper
from nbplane.apis.engines.pool import KernelPool, KernelProvider
from nbplane.settings import get_settings


class IsolatedEngine(Engine):
    """A fresh kernel per execution, taken from a pool of kernels started ahead of time."""

    name = "kernel-isolated"

    def __init__(
        self,
        pool_size: int = 4,
        *,
        forked: bool = True,
        kernel_names: Iterable[str] = ("python3",),
        start_timeout: float = 60.0,
    ) -> None:
        """``kernel_names`` get their pool filled at ``start``; others on their first request.
        ``forked=False`` starts every kernel through jupyter_client (slower, for comparison)."""
        super().__init__()
        self.provider = KernelProvider(forked=forked, start_timeout=start_timeout)
        self.pool = KernelPool(self.provider, pool_size)
        self.kernel_names = tuple(kernel_names)

    @classmethod
    def for_worker(cls, pool_size: int) -> IsolatedEngine:
        return cls(pool_size=get_settings().pool_max or pool_size)

    async def _start(self) -> None:
        await self.provider.start()
        for kernel_name in self.kernel_names:
            self.pool.prepare(kernel_name)

    async def wait_ready(self) -> None:
        """Wait until the pools of ``kernel_names`` are full (for tests and benchmarks)."""
        for kernel_name in self.kernel_names:
            await self.pool.wait_full(kernel_name)

    async def _stop(self) -> None:
        await self.pool.stop()
        await self.provider.stop()

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        began = time.perf_counter()
        kernel = await stopper.guard(self.pool.acquire(run.request.kernel_name))
        try:
            began = run.timed("engine_start", began)
            await kernel.run(run, run.code_cells(), stopper)
            run.timed("cells", began)
        finally:
            self.provider.dispose_soon(kernel)
