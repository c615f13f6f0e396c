"""Kernel factories: what makes a ready :class:`~nbplane.apis.engines.kernel.Kernel`.

:class:`KernelFactory` is the contract. :class:`StockKernelFactory` starts any kernelspec through
jupyter_client's ``AsyncKernelManager`` (an interpreter start per kernel); the
:class:`~nbplane.apis.engines.forked.ForkedKernelFactory` forks ipykernel kernels from a template
process, about ten times cheaper. Both wait for a kernel with :func:`wait_ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager

from nbplane.apis.engines._forkserver import KERNEL_ARGS
from nbplane.apis.engines.base import KernelStartError
from nbplane.apis.engines.kernel import Kernel, KernelProcess, describe_exit
from nbplane.platform.sandbox import without_nbplane_settings


class KernelFactory(ABC):
    """Makes ready kernels for kernel names it was chosen for."""

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Prepare ahead of the first kernel (for example a template process)."""

    async def stop(self) -> None:  # noqa: B027 (optional hook)
        """Release what ``start`` made; kernels are ended by their owners before this."""

    @abstractmethod
    async def start_kernel(self, kernel_name: str) -> Kernel:
        """A ready kernel, or KernelStartError; on cancellation nothing is left running."""


def ipykernel_argv(spec: KernelSpec) -> tuple[list[str], list[str]] | None:
    """For a kernelspec that runs ipykernel: (interpreter options, arguments after the module)."""
    argv = list(spec.argv)
    if "-m" not in argv:
        return None
    module = argv.index("-m")
    if argv[module + 1 : module + 2] not in (["ipykernel_launcher"], ["ipykernel"]):
        return None
    return argv[1:module], argv[module + 2 :]


def same_python(executable: str) -> bool:
    """Is ``executable`` (from a kernelspec's argv) nbplane's own interpreter?"""
    major, minor = sys.version_info[:2]
    if executable in ("python", f"python{major}", f"python{major}.{minor}"):
        return True  # jupyter_client replaces these names with sys.executable
    return os.path.realpath(executable) == os.path.realpath(sys.executable)


async def wait_ready(
    client: AsyncKernelClient, exited: asyncio.Future[Any], timeout: float
) -> dict[str, Any]:
    """Wait until the kernel answers kernel_info and its IOPub reaches us; return the info.

    IOPub is connected once ipykernel's ``iopub_welcome`` arrives (ipykernel >= 7) or once a
    status message answering one of our kernel_info requests does (any kernel); until then the
    request is repeated. No fixed wait for IOPub to go quiet, unlike ``wait_for_ready``.
    """
    deadline = time.monotonic() + timeout
    asked = {client.kernel_info()}
    info: dict[str, Any] | None = None
    iopub_ok = False
    shell_get = asyncio.ensure_future(client.shell_channel.get_msg())
    iopub_get = asyncio.ensure_future(client.iopub_channel.get_msg())
    try:
        while info is None or not iopub_ok:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelStartError(f"the kernel did not answer within {timeout:g} s")
            done, _ = await asyncio.wait(
                (shell_get, iopub_get, exited),
                timeout=min(remaining, 0.25),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if exited.done():
                code = exited.result() if not exited.cancelled() else None
                raise KernelStartError(f"{describe_exit(code)} during start-up")
            if shell_get in done:
                msg = shell_get.result()
                if msg["msg_type"] == "kernel_info_reply":
                    info = msg["content"]
                shell_get = asyncio.ensure_future(client.shell_channel.get_msg())
            if iopub_get in done:
                msg = iopub_get.result()
                parent = msg["parent_header"].get("msg_id")
                if msg["msg_type"] == "iopub_welcome" or parent in asked:
                    iopub_ok = True
                iopub_get = asyncio.ensure_future(client.iopub_channel.get_msg())
            if not done and not iopub_ok:
                asked.add(client.kernel_info())
    finally:
        for pending in (shell_get, iopub_get):
            pending.cancel()
        await asyncio.wait((shell_get, iopub_get))
    return info


def watch_pid(pid: int) -> asyncio.Future[None]:
    """A future resolved when process ``pid`` ends (a pidfd in the event loop: no polling)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        future.set_result(None)
        return future

    def ended() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, ended)

    def cancelled(done: asyncio.Future[None]) -> None:
        if done.cancelled():
            loop.remove_reader(fd)
            os.close(fd)

    future.add_done_callback(cancelled)
    return future


class StockProcess(KernelProcess):
    """A kernel started by jupyter_client's AsyncKernelManager."""

    def __init__(self, manager: AsyncKernelManager) -> None:
        self.manager = manager
        self._poller: asyncio.Task[None] | None = None
        self.exited = asyncio.get_running_loop().create_future()
        popen = getattr(manager.provisioner, "process", None)
        self._popen = popen if isinstance(popen, subprocess.Popen) else None
        pid = getattr(popen, "pid", None)
        if isinstance(pid, int) and hasattr(os, "pidfd_open"):
            watch_pid(pid).add_done_callback(lambda _: self._ended(popen))
        else:  # another provisioner, or not Linux: ask twice a second
            self._poller = asyncio.ensure_future(self._poll())

    def _ended(self, popen: Any) -> None:
        code = popen.poll() if popen is not None else None
        if not self.exited.done():
            self.exited.set_result(code if isinstance(code, int) else None)

    async def _poll(self) -> None:
        while await self.manager.is_alive():
            await asyncio.sleep(0.5)
        if not self.exited.done():
            self.exited.set_result(None)

    async def interrupt(self) -> None:
        await self.manager.interrupt_kernel()

    async def kill(self) -> None:
        try:
            await self.manager.shutdown_kernel(now=True)
        finally:
            if self._poller is not None:
                self._poller.cancel()
            if not self.exited.done():
                self.exited.set_result(None)
            if self._popen is not None:
                # jupyter_client gives up waiting after a few seconds on a loaded machine and
                # drops the process: end and reap it here, or it stays a zombie of this server
                with contextlib.suppress(ProcessLookupError):
                    self._popen.kill()
                await asyncio.to_thread(self._popen.wait)


class StockKernelFactory(KernelFactory):
    """Any kernelspec, started by jupyter_client (an interpreter start per kernel)."""

    def __init__(self, context: zmq.asyncio.Context, start_timeout: float = 60.0) -> None:
        self.context = context
        self.start_timeout = start_timeout
        self._directory: str | None = None
        self._ids = itertools.count(1)

    async def stop(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    async def start_kernel(self, kernel_name: str) -> Kernel:
        manager = AsyncKernelManager(kernel_name=kernel_name, context=self.context)
        try:
            spec = manager.kernel_spec
        except NoSuchKernel as exc:
            raise KernelStartError(f"no kernelspec named {kernel_name!r}") from exc
        assert spec is not None
        extra: list[str] = []
        if ipykernel_argv(spec) is not None:
            # IPC sockets in a private directory: no TCP ports to race for, no plain-text warning
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="nbpk-")
            manager.transport = "ipc"
            manager.ip = os.path.join(self._directory, f"k{next(self._ids)}")
            extra = KERNEL_ARGS
        try:
            await manager.start_kernel(
                extra_arguments=extra, env=without_nbplane_settings(os.environ)
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await manager.cleanup_resources()
            if isinstance(exc, Exception):
                raise KernelStartError(f"could not start: {exc}") from exc
            raise
        process = StockProcess(manager)
        client: AsyncKernelClient = manager.client()
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        runs_nbplane = bool(extra) and same_python(spec.argv[0])
        kernel = Kernel(kernel_name, client, process, {}, runs_nbplane=runs_nbplane)
        try:
            kernel.info = await wait_ready(client, process.exited, self.start_timeout)
        except BaseException:
            await kernel.dispose()
            raise
        return kernel
