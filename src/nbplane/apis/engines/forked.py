"""Kernels forked from a template process that already imported ipykernel.

A stock kernel spends about 0.35 CPU-s starting an interpreter and importing ipykernel, IPython
and their dependencies; that caps isolated executions near 4 per second on two cores. The
template (:mod:`nbplane.apis.engines._forkserver`) pays the imports once; each kernel is then a fork
plus ipykernel's own set-up, about 40 ms of CPU. The kernels talk over IPC sockets in a private
directory (no TCP ports to race for at tens of kernels per second) and are reaped by the
template, which reports how each one ended.

Only for kernelspecs that run ipykernel with nbplane's own interpreter and no extra environment
(the default ``python3``); other kernelspecs start the stock way. A forked kernel sees the
environment variables the template had when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec

from nbplane.apis.engines.base import KernelStartError
from nbplane.apis.engines.factories import (
    KernelFactory,
    ipykernel_argv,
    same_python,
    wait_ready,
)
from nbplane.apis.engines.kernel import Kernel, KernelProcess
from nbplane.platform.sandbox import without_nbplane_settings

TEMPLATE_START_TIMEOUT = 60.0


class ForkedProcess(KernelProcess):
    """A kernel or shell forked by the template: its own session, so signals reach it and its
    children."""

    def __init__(self, pid: int, exited: asyncio.Future[int | None], files: list[str]) -> None:
        self.pid = pid
        self.exited = exited
        self.files = files

    def _signal(self, number: int, group: bool) -> None:
        if self.exited.done():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                try:
                    os.killpg(self.pid, number)
                    return
                except ProcessLookupError:
                    pass
            os.kill(self.pid, number)

    async def interrupt(self) -> None:
        self._signal(signal.SIGINT, group=False)

    async def kill(self) -> None:
        self._signal(signal.SIGKILL, group=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), 10)
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class ForkServer:
    """A template process (:mod:`nbplane.apis.engines._forkserver`) and the children it forks:
    ``kind`` ``"kernel"`` (ipykernel pre-imported) or ``"shell"`` (IPython shells, each handed
    a socket). A template that died is started again by the next :meth:`fork`."""

    def __init__(self, kind: str = "kernel", start_timeout: float = 60.0) -> None:
        self.kind = kind
        self.start_timeout = start_timeout
        self.broken = False
        """Set when the template cannot start (kernels then start the stock way)."""
        self._template: asyncio.subprocess.Process | None = None
        self._channels: socket.socket | None = None
        """Shells: where their sockets go to the template, just before each request."""
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}

    @property
    def pid(self) -> int | None:
        template = self._template
        return template.pid if template is not None and template.returncode is None else None

    async def start(self) -> None:
        await self._ensure_template()

    async def _ensure_template(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._template is not None and self._template.returncode is None:
                return self._template
            argv: list[str] = []
            theirs: socket.socket | None = None
            if self.kind == "shell":
                if self._channels is not None:
                    self._channels.close()
                self._channels, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                argv = ["shell", str(theirs.fileno())]
            try:
                template = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-Xfrozen_modules=off",  # what ipykernel's kernelspec asks for debugpy's sake
                    "-m",
                    "nbplane.apis.engines._forkserver",
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    pass_fds=() if theirs is None else (theirs.fileno(),),
                    env={  # as jupyter_client, less the server's own settings
                        **without_nbplane_settings(os.environ),
                        "JPY_PARENT_PID": str(os.getpid()),
                    },
                    start_new_session=True,  # a Ctrl-C of nbplane's terminal is ours to handle
                )
            except OSError as exc:
                self.broken = True
                raise KernelStartError(f"cannot start the fork server: {exc}") from exc
            finally:
                if theirs is not None:
                    theirs.close()
            assert template.stdout is not None
            try:
                line = await asyncio.wait_for(template.stdout.readline(), TEMPLATE_START_TIMEOUT)
                ready = json.loads(line) if line else {}
            except (TimeoutError, ValueError):
                ready = {}
            if "ready" not in ready:
                with contextlib.suppress(ProcessLookupError):
                    template.kill()
                await template.wait()
                self.broken = True
                raise KernelStartError("the fork server did not start (see its stderr)")
            self._template = template
            self._reader = asyncio.ensure_future(self._read(template))
            return template

    async def _read(self, template: asyncio.subprocess.Process) -> None:
        """Dispatch the template's answers: forked pids and ended children."""
        assert template.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            while line := await template.stdout.readline():
                message: dict[str, Any] = json.loads(line)
                if "exit" in message:
                    exited = self._exits.pop(message["exit"], None)
                    if exited is not None and not exited.done():
                        exited.set_result(message.get("code"))
                    continue
                pending = self._pending.pop(message["id"], None)
                if "pid" in message:
                    self._exits.setdefault(message["pid"], loop.create_future())
                if pending is None or pending.done():
                    continue
                if "pid" in message:
                    pending.set_result(message["pid"])
                else:
                    pending.set_exception(KernelStartError(f"fork failed: {message['error']}"))
        finally:
            # The template is gone, and with it (PR_SET_PDEATHSIG) every child it forked.
            for pending in self._pending.values():
                if not pending.done():
                    pending.set_exception(KernelStartError("the fork server exited"))
            self._pending.clear()
            for exited in self._exits.values():
                if not exited.done():
                    exited.set_result(None)
            self._exits.clear()
            if self._template is template:
                self._template = None

    async def fork(
        self, request: dict[str, Any], channel: socket.socket | None = None
    ) -> tuple[int, asyncio.Future[int | None]]:
        """Fork a child for ``request`` (a shell gets ``channel``); its pid and its exit code
        (resolved when it ends). KernelStartError if the template cannot fork."""
        template = await self._ensure_template()
        assert template.stdin is not None
        loop = asyncio.get_running_loop()
        number = next(self._ids)
        forked: asyncio.Future[int] = loop.create_future()
        self._pending[number] = forked
        try:
            if channel is not None:
                assert self._channels is not None
                socket.send_fds(self._channels, [b"s"], [channel.fileno()])
            template.stdin.write(json.dumps({**request, "id": number}).encode() + b"\n")
            await template.stdin.drain()
            pid = await asyncio.wait_for(forked, self.start_timeout)
        except BaseException as exc:
            self._pending.pop(number, None)
            if forked.done() and not forked.cancelled() and forked.exception() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(forked.result(), signal.SIGKILL)
            if isinstance(exc, (OSError, TimeoutError)):
                raise KernelStartError(f"the fork server did not answer: {exc!r}") from exc
            raise
        exited = self._exits.get(pid)
        if exited is None:  # it already ended
            exited = loop.create_future()
            exited.set_result(None)
        return pid, exited

    async def stop(self) -> None:
        """End the template; it kills any child still alive."""
        template, self._template = self._template, None
        if template is not None:
            assert template.stdin is not None
            template.stdin.close()
            try:
                await asyncio.wait_for(template.wait(), 10)
            except TimeoutError:
                template.kill()
                await template.wait()
        if self._reader is not None:
            await asyncio.wait((self._reader,))
            self._reader = None
        if self._channels is not None:
            self._channels.close()
            self._channels = None


class ForkedKernelFactory(KernelFactory):
    """Starts ``python3`` kernels by asking the template process to fork."""

    def __init__(self, context: zmq.asyncio.Context, start_timeout: float = 60.0) -> None:
        self.context = context
        self.start_timeout = start_timeout
        self.server = ForkServer("kernel", start_timeout)
        self._ids = itertools.count(1)
        self._directory: str | None = None

    @property
    def broken(self) -> bool:
        """The template cannot start: the provider then falls back to stock kernels."""
        return self.server.broken

    @staticmethod
    def can_fork(spec: KernelSpec) -> bool:
        """Would forking our template give the same kernel as this kernelspec?"""
        parts = ipykernel_argv(spec)
        return (
            sys.platform == "linux"
            and hasattr(os, "pidfd_open")
            and parts is not None
            and parts[0] in ([], ["-Xfrozen_modules=off"])
            and parts[1] == ["-f", "{connection_file}"]
            and same_python(spec.argv[0])
            and not spec.env
            and spec.interrupt_mode == "signal"
        )

    async def start(self) -> None:
        await self.server.start()

    async def start_kernel(self, kernel_name: str) -> Kernel:
        if self._directory is None:
            # short: IPC socket paths must stay under ~107 bytes
            self._directory = tempfile.mkdtemp(prefix="nbpk-")
        number = next(self._ids)
        prefix = os.path.join(self._directory, f"k{number}")
        info = {
            "transport": "ipc",
            "ip": prefix,
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": uuid.uuid4().hex,
            "signature_scheme": "hmac-sha256",
            "kernel_name": kernel_name,
        }
        connection_file = f"{prefix}.json"
        descriptor = os.open(connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(info, file)
        files = [connection_file, *(f"{prefix}-{port}" for port in range(1, 6))]
        try:
            pid, exited = await self.server.fork({"connection_file": connection_file})
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(connection_file)
            raise
        process = ForkedProcess(pid, exited, files)
        client = AsyncKernelClient(context=self.context)
        client.load_connection_info(info)  # type: ignore[arg-type]
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        kernel = Kernel(kernel_name, client, process, {}, runs_nbplane=True)
        try:
            kernel.info = await wait_ready(client, exited, self.start_timeout)
        except BaseException:
            await kernel.dispose()
            raise
        return kernel

    async def stop(self) -> None:
        """End the template; it kills any kernel still alive, then the directory goes."""
        await self.server.stop()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
