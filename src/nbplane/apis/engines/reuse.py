"""The fast kernel engine: a warm kernel per notebook version runs only each request's cells.

The warm runners, their growth and their discarding are :mod:`nbplane.apis.engines.warm`'s;
this engine's runners are Jupyter kernels. Every request starts from the state the setup cells
left: after each request, whether it completed or raised, the kernel's namespace is put back as
it was (see :mod:`nbplane.apis.engines._baseline`): names the request added go, names it rebound
(a parameter, a shadowed builtin such as ``len = 0``) get their setup value again, and IPython's
output caches and last exception are reset. A kernel whose state cannot be put back is
discarded. What does persist between requests on the same warm kernel — the price of the speed
— is what the notebook's own cells do to objects in place (``cache.append(x)`` on a list the
setup made) and to the process: imported modules, open files and connections, environment
variables, the working directory, threads, memory. Use an isolated engine when that matters.

The request cells go to the kernel as one execute request (see
:mod:`nbplane.apis.engines._incell`), which keeps them out of IPython's history. Cells with a
top-level ``await``, or kernels that cannot import nbplane, get one request per cell instead,
entered in the history like notebook cells (IPython reads a trailing ``;`` from there); putting
the state back empties ``In`` and ``Out`` of them again, and only the execution counter keeps
counting.
"""

from __future__ import annotations

from pathlib import Path

from nbplane.apis.engines._baseline import MODULE as BASELINE_MODULE
from nbplane.apis.engines.base import ExecutionRequest, Run, Stopper
from nbplane.apis.engines.kernel import Kernel
from nbplane.apis.engines.pool import KernelProvider
from nbplane.apis.engines.warm import WarmEngine
from nbplane.settings import get_settings

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


class ReuseEngine(WarmEngine[Kernel]):
    """Warm kernels per key that ran the setup cells once; requests run only their own cells."""

    name = "kernel-reuse"

    def __init__(
        self,
        pool_min: int = 1,
        pool_max: int = 4,
        *,
        idle_seconds: float = 60.0,
        max_keys: int = 16,
        setup_timeout: float = 600.0,
        forked: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(
            pool_min=pool_min,
            pool_max=pool_max,
            idle_seconds=idle_seconds,
            max_keys=max_keys,
            setup_timeout=setup_timeout,
        )
        self.provider = KernelProvider(forked=forked, start_timeout=start_timeout)

    @classmethod
    def for_worker(cls, pool_size: int) -> ReuseEngine:
        settings = get_settings()
        pool_max = settings.pool_max or pool_size
        return cls(
            min(settings.pool_min, pool_max), pool_max, idle_seconds=settings.pool_idle_seconds
        )

    async def _start(self) -> None:
        await self.provider.start()

    async def _stop(self) -> None:
        await super()._stop()
        await self.provider.stop()

    async def _new_runner(self, request: ExecutionRequest) -> Kernel:
        return await self.provider.start_kernel(request.kernel_name)

    async def _setup(self, runner: Kernel, setup: Run, cells: list[int], stopper: Stopper) -> bool:
        usable = await runner.run(setup, cells, stopper)
        if usable and not setup.failed and not await runner.run_quietly(KEEP_STATE, stopper):
            setup.fail(
                "unsupported_kernel",
                "the reuse engine could not keep the kernel's state after the setup cells "
                "(it needs an IPython kernel)",
            )
        return usable and not setup.failed

    async def _serve(self, runner: Kernel, run: Run, cells: list[int], stopper: Stopper) -> bool:
        return await runner.run(run, cells, stopper, together=True, then=RESTORE_STATE)

    def _alive(self, runner: Kernel) -> bool:
        return runner.alive

    def _dispose(self, runner: Kernel) -> None:
        self.provider.dispose_soon(runner)
