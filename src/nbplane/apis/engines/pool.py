"""Where engines get kernels: the provider picks a factory and ends kernels, the pool keeps
kernels started ahead of requests.

:class:`KernelProvider` chooses a factory per kernel name (forked when it can, else stock) and
ends kernels in the background; :class:`KernelPool` keeps kernels started ahead of requests, so
start-up stays off the request path of the isolated engine.
"""

from __future__ import annotations

import asyncio
import logging

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from nbplane.apis.engines.base import KernelStartError, Reaper
from nbplane.apis.engines.factories import KernelFactory, StockKernelFactory
from nbplane.apis.engines.kernel import Kernel

log = logging.getLogger(__name__)


class KernelProvider:
    """Chooses a factory per kernel name and ends kernels in the background.

    ``forked`` (default) makes ``python3`` kernels, when their kernelspec runs ipykernel with
    nbplane's own interpreter, by forking a template process; every other kernelspec, or all
    of them with ``forked=False``, starts through jupyter_client.
    """

    def __init__(self, *, forked: bool = True, start_timeout: float = 60.0) -> None:
        self.forked = forked
        self.start_timeout = start_timeout
        self.context: zmq.asyncio.Context | None = None
        self._stock: StockKernelFactory | None = None
        self._fork: KernelFactory | None = None
        self._chosen: dict[str, KernelFactory] = {}
        self._specs = KernelSpecManager()
        self._reaper = Reaper[Kernel]("kernel")

    async def start(self) -> None:
        if self.context is not None:
            return
        context = zmq.asyncio.Context()
        # Kernels bind a moment after we connect: retry every 5 ms instead of every 100 ms.
        context.setsockopt(zmq.RECONNECT_IVL, 5)
        context.setsockopt(zmq.LINGER, 0)
        self.context = context
        self._stock = StockKernelFactory(context, self.start_timeout)

    def factory_for(self, kernel_name: str) -> KernelFactory:
        """The factory for ``kernel_name``; KernelStartError when no such kernelspec exists."""
        chosen = self._chosen.get(kernel_name)
        if chosen is not None:
            return chosen
        if self.context is None or self._stock is None:
            raise RuntimeError("the kernel provider is not started")
        try:
            spec = self._specs.get_kernel_spec(kernel_name)
        except NoSuchKernel as exc:
            raise KernelStartError(f"no kernelspec named {kernel_name!r}") from exc
        factory: KernelFactory = self._stock
        if self.forked:
            from nbplane.apis.engines.forked import ForkedKernelFactory

            if ForkedKernelFactory.can_fork(spec):
                if self._fork is None:
                    self._fork = ForkedKernelFactory(self.context, self.start_timeout)
                factory = self._fork
        self._chosen[kernel_name] = factory
        return factory

    async def start_kernel(self, kernel_name: str) -> Kernel:
        """A ready kernel of ``kernel_name``; ``stop`` kills it if nobody disposed of it."""
        kernel = await self._start_kernel(kernel_name)
        if self.context is None:  # stopped meanwhile
            await kernel.dispose()
            raise KernelStartError("the engine is stopping")
        self._reaper.live.add(kernel)
        return kernel

    async def _start_kernel(self, kernel_name: str) -> Kernel:
        factory = self.factory_for(kernel_name)
        if factory is self._fork and self._stock is not None:
            try:
                return await factory.start_kernel(kernel_name)
            except KernelStartError as exc:
                if getattr(factory, "broken", False):  # the template itself cannot run
                    log.warning("forked kernels unavailable (%s); starting stock kernels", exc)
                    self._chosen = {k: self._stock for k in self._chosen}
                    return await self._stock.start_kernel(kernel_name)
                raise
        return await factory.start_kernel(kernel_name)

    def dispose_soon(self, kernel: Kernel) -> None:
        """Kill ``kernel`` in the background; ``stop`` waits for it."""
        self._reaper.dispose_soon(kernel)

    async def stop(self) -> None:
        """Kill every kernel still alive (in use or not) and wait until all are gone."""
        await self._reaper.stop()
        if self._fork is not None:
            await self._fork.stop()
            self._fork = None
        if self._stock is not None:
            await self._stock.stop()
        self._chosen.clear()
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None


class KernelPool:
    """Kernels started ahead of time, ``size`` per kernel name, each used once.

    Taking a kernel starts its replacement in the background. A failed start is handed to the
    request that takes it (as KernelStartError) rather than retried in a loop, so a broken
    kernelspec costs one start per request, not a busy machine.
    """

    def __init__(self, provider: KernelProvider, size: int = 4) -> None:
        if size < 1:
            raise ValueError("the pool needs at least one kernel per kernel name")
        self.provider = provider
        self.size = size
        self._ready: dict[str, asyncio.Queue[Kernel | KernelStartError]] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    def prepare(self, kernel_name: str) -> None:
        """Start filling the pool for ``kernel_name`` (KernelStartError if it does not exist)."""
        if kernel_name in self._ready:
            return
        self.provider.factory_for(kernel_name)
        self._ready[kernel_name] = asyncio.Queue()
        for _ in range(self.size):
            self._start_one(kernel_name)

    async def wait_full(self, kernel_name: str) -> None:
        """Wait until the pool of ``kernel_name`` holds ``size`` kernels (or failures)."""
        self.prepare(kernel_name)
        queue = self._ready[kernel_name]
        while queue.qsize() < self.size and self._starting:
            await asyncio.wait(set(self._starting), return_when=asyncio.FIRST_COMPLETED)

    def _start_one(self, kernel_name: str) -> None:
        task = asyncio.ensure_future(self._fill(kernel_name))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _fill(self, kernel_name: str) -> None:
        try:
            item: Kernel | KernelStartError = await self.provider.start_kernel(kernel_name)
        except KernelStartError as exc:
            item = exc
        except Exception as exc:  # a bug or an OS error: the request that takes it reports it
            log.exception("starting a %s kernel failed", kernel_name)
            item = KernelStartError(repr(exc))
        if self._closed:
            if isinstance(item, Kernel):
                await item.dispose()
            return
        self._ready[kernel_name].put_nowait(item)

    async def acquire(self, kernel_name: str) -> Kernel:
        """A fresh ready kernel, now if one is waiting; KernelStartError if its start failed."""
        if self._closed:
            raise RuntimeError("the kernel pool is stopped")
        self.prepare(kernel_name)
        queue = self._ready[kernel_name]
        while True:
            item = await queue.get()
            self._start_one(kernel_name)
            if isinstance(item, KernelStartError):
                raise item
            if item.alive:
                return item
            self.provider.dispose_soon(item)  # died while waiting: take the next one

    async def stop(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        if self._starting:
            await asyncio.wait(set(self._starting))
        for queue in self._ready.values():
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, Kernel):
                    self.provider.dispose_soon(item)
        self._ready.clear()
