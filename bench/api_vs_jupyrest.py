"""Serve one trivial notebook (``y = 2x``) as a REST API with nbplane, jupyrest and Kernel Gateway.

Every server is started by this script on a free 127.0.0.1 port and stopped at the end:
jupyrest 0.2.0 and Jupyter Kernel Gateway (notebook-http mode), each from its own virtual
environment, and ``nbplane serve`` with one contract per engine on the same notebook
(``isolated``, ``reuse``, ``kernel-isolated``, ``kernel-reuse`` by default). For each server and
engine it measures the latency from the POST until the output has been read (sequential
requests, the servers taking turns), executions per second with 1 and 8 clients, the idle PSS of
the server's process tree and its growth over a run of many executions, and, from nbplane's
``Server-Timing`` header, where one execution's time goes. Every answer is checked
(``y == 2 * x`` for a different ``x`` each time). The targets of issue 17 are ratios to Kernel
Gateway and jupyrest measured in the same run; the script prints each as met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    ProcessMemory,
    Server,
    Summary,
    TreeMemory,
    code_cell,
    ensure_venv,
    free_port,
    nbplane_command,
    package_version,
    percentile,
    tree_memory,
    write_notebook,
)
from rich.console import Console
from rich.table import Table

from nbplane.apis.models import HOPS as EXECUTION_HOPS

CACHE = Path.home() / ".cache" / "nbplane-bench"
DEFAULT_JUPYREST_VENV = CACHE / "jupyrest-venv"
DEFAULT_KG_VENV = CACHE / "kernel-gateway-venv"
JUPYREST_PACKAGES = ("jupyrest==0.2.0",)
# Kernel Gateway does not depend on ipykernel, but without it there is no python3 kernel.
KG_PACKAGES = ("jupyter_kernel_gateway", "ipykernel")

ALL_SERVERS = ("kernel-gateway", "jupyrest", "nbplane")
KG, JUPYREST, NBPLANE = ALL_SERVERS
DEFAULT_ENGINES = ("isolated", "reuse", "kernel-isolated", "kernel-reuse")
REFERENCE_ENGINES = {"kernel-reuse": "reuse", "kernel-isolated": "isolated"}
"""Kernel engines whose figures are checked against the targets of the IPython-shell engine of
the same kind, for reference only (the issue's targets are the shell engines')."""

TARGET_REUSE_RATE_RATIO = 3.0  # reuse executions/s (8 clients) >= 3x KG's
TARGET_REUSE_MEDIAN_RATIO = 3.0  # reuse median <= KG's median / 3
TARGET_IDLE_PSS_RATIO = 2.0  # idle tree PSS <= 2x KG's
TARGET_GROWTH_MB = 10.0  # tree PSS growth over the memory run < 10 MB
TARGET_GROWTH_RUNS = 1000  # ... of this many executions
TARGET_JUPYREST_RATIO = 100.0  # jupyrest's median and executions/s, both > 100x worse

HOPS = (*EXECUTION_HOPS, "total")
"""The ``Server-Timing`` entries nbplane sends on ``POST …/executions?wait=``, in their order."""

NAME = "double"
INPUT_SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "number"}},
    "required": ["x"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"y": {"type": "number"}},
    "required": ["y"],
}

# jupyrest 0.2.0 has no command line: build its FastAPI app as its own code does
# (in-memory executions and artifacts, notebooks from a directory) and serve it with uvicorn.
JUPYREST_LAUNCHER = """\
import sys
from pathlib import Path

import uvicorn
from jupyrest.http.asgi import create_asgi_app
from jupyrest.infra.in_memory.builder import InMemoryApplicationBuilder

deps = InMemoryApplicationBuilder(notebooks_dir=Path(sys.argv[1])).build()
uvicorn.run(create_asgi_app(deps), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

QUICK = {
    "runs": 15,
    "jupyrest_runs": 3,
    "throughput_runs": 40,
    "jupyrest_throughput_runs": 6,
    "memory_runs": 100,
    "max_seconds": 20.0,
}
FULL = {
    "runs": 50,
    "jupyrest_runs": 10,
    "throughput_runs": 200,
    "jupyrest_throughput_runs": 24,
    "memory_runs": TARGET_GROWTH_RUNS,
    "max_seconds": 120.0,
}


class BenchError(Exception):
    """A server answered wrongly or not at all."""


# --------------------------------------------------------------------------------------------
# Notebooks and contracts


def notebook_cells(save_output_import: str) -> list[dict[str, Any]]:
    """A ``parameters`` cell with ``x = 1``, then a cell saving ``{"y": 2 * x}``."""
    return [
        code_cell("parameters", "x = 1\n", tags=("parameters",)),
        code_cell("double", f"{save_output_import}\nsave_output({{'y': 2 * x}})\n", tags=()),
    ]


def write_contract(path: Path, engine: str | None = None) -> None:
    contract: dict[str, Any] = {"input": INPUT_SCHEMA, "output": OUTPUT_SCHEMA}
    if engine:
        contract["engine"] = engine
    path.write_text(json.dumps(contract, indent=1) + "\n", encoding="utf-8")


def write_jupyrest_notebooks(directory: Path) -> None:
    write_notebook(directory / f"{NAME}.ipynb", notebook_cells("from jupyrest import save_output"))
    write_contract(directory / f"{NAME}.config.json")


def api_name(engine: str) -> str:
    """nbplane's API of one engine: the same notebook, a contract naming the engine."""
    return f"{NAME}-{engine}"


def write_nbplane_notebooks(directory: Path, engines: list[str]) -> None:
    cells = notebook_cells("from nbplane import save_output")
    for engine in engines:
        write_notebook(directory / f"{api_name(engine)}.ipynb", cells)
        write_contract(directory / f"{api_name(engine)}.config.json", engine)


def write_kg_notebook(path: Path) -> None:
    """One cell annotated ``# POST /double``: Kernel Gateway runs it for each request."""
    source = (
        f"# POST /{NAME}\n"
        "import json\n"
        "request = json.loads(REQUEST)\n"
        "print(json.dumps({'y': 2 * request['body']['x']}))\n"
    )
    write_notebook(path, [code_cell(NAME, source, tags=())])


# --------------------------------------------------------------------------------------------
# One execution per client call: POST, then whatever it takes to read the output

Hops = dict[str, float]
"""Milliseconds per hop of one execution, as the server's ``Server-Timing`` header tells."""

Execute = Callable[[httpx.Client, int, float], Hops | None]
"""Runs one execution with ``x`` within ``timeout`` seconds, checks its answer, and returns
the server's timing of it (None: the server sends none)."""


def check_output(output: Any, x: int, where: str) -> None:
    if not isinstance(output, dict) or output.get("y") != 2 * x:
        raise BenchError(f"{where}: output {output!r}, want {{'y': {2 * x}}}")


def expect(response: httpx.Response, codes: tuple[int, ...], what: str) -> Any:
    if response.status_code not in codes:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def poll(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str) -> Any:
    """Call ``get()`` until ``done(answer)``; pauses 2 ms, growing 1.5x a time up to 50 ms."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        answer = get()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not finished after {timeout:.0f} s: {answer!r}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)


def parse_server_timing(header: str | None) -> Hops | None:
    """``{name: ms}`` from a ``Server-Timing`` header (``name;dur=1.2, other;dur=0.3``); None
    when the header is absent or has no ``dur``."""
    hops: Hops = {}
    for entry in (header or "").split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if name and key.strip() == "dur":
                with suppress(ValueError):
                    hops[name] = float(value.strip().strip('"'))
    return hops or None


def jupyrest_execute(client: httpx.Client, x: int, timeout: float) -> None:
    """jupyrest 0.2.0: POST execute (202), poll the execution, then read the output artifact."""
    accepted = expect(
        client.post(f"/api/notebooks/{NAME}/execute", json={"parameters": {"x": x}}),
        (202,),
        "jupyrest POST execute",
    )
    eid = accepted["execution_id"]
    execution = poll(
        lambda: expect(client.get(f"/api/notebook_executions/{eid}"), (200,), "jupyrest GET"),
        lambda e: e["status"] in ("COMPLETED", "INTERNAL_ERROR"),
        timeout,
        f"jupyrest execution {eid}",
    )
    if execution.get("execution_completion_status") != "SUCCEEDED" or not execution.get(
        "has_output"
    ):
        detail = client.get(f"/api/notebook_executions/{eid}/artifacts/exception").text
        raise BenchError(f"jupyrest execution {eid} did not succeed: {execution!r}\n{detail}")
    output = expect(
        client.get(f"/api/notebook_executions/{eid}/artifacts/output"),
        (200,),
        "jupyrest GET output",
    )
    check_output(output, x, "jupyrest")


def kg_execute(client: httpx.Client, x: int, timeout: float) -> None:
    """Kernel Gateway notebook-http: the annotated cell prints the answer as the response body."""
    response = client.post(f"/{NAME}", json={"x": x}, timeout=timeout)
    if response.status_code != 200:
        raise BenchError(f"kernel gateway POST: HTTP {response.status_code}: {response.text[:500]}")
    try:
        output = json.loads(response.text)
    except ValueError as exc:
        raise BenchError(f"kernel gateway answered {response.text[:200]!r}") from exc
    check_output(output, x, "kernel gateway")


def untimed(execute: Callable[[httpx.Client, int, float], None]) -> Execute:
    """An anchor's execution: it has no server timing."""

    def run(client: httpx.Client, x: int, timeout: float) -> Hops | None:
        execute(client, x, timeout)
        return None

    return run


NBPLANE_FINAL = ("completed", "failed", "timed_out", "cancelled")


def nbplane_execute(name: str) -> Execute:
    """nbplane's API: POST ``?wait=`` answers with the finished execution and its output, and
    times its hops in ``Server-Timing``. An answer before the end (the wait ran out) is followed
    by polling; its timing is then left out, being the POST's only."""

    def execute(client: httpx.Client, x: int, timeout: float) -> Hops | None:
        response = client.post(
            f"/api/v1/notebooks/{name}/executions",
            params={"wait": min(timeout, 300)},
            json={"parameters": {"x": x}},
        )
        record = expect(response, (200, 201), f"nbplane POST {name}")
        hops = parse_server_timing(response.headers.get("server-timing"))
        if str(record.get("status")).lower() not in NBPLANE_FINAL:
            hops = None
            record = poll(
                lambda: expect(
                    client.get(f"/api/v1/executions/{record['id']}", params={"wait": 30}),
                    (200,),
                    "nbplane GET",
                ),
                lambda r: str(r.get("status")).lower() in NBPLANE_FINAL,
                timeout,
                f"nbplane execution {record.get('id')}",
            )
        if str(record.get("status")).lower() != "completed":
            raise BenchError(f"nbplane {name} execution did not complete: {record!r}")
        output = record.get("output")
        if output is None:
            output = expect(
                client.get(f"/api/v1/executions/{record['id']}/output"),
                (200,),
                "nbplane GET output",
            )
        check_output(output, x, f"nbplane {name}")
        return hops

    return execute


# --------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class Rate:
    executions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds


@dataclass(frozen=True)
class MemoryRun:
    """The server tree idle (after warm-up and a settle time), then after a run of executions
    and the same settle time."""

    idle: TreeMemory
    after: TreeMemory
    peak_rss: int
    executions: int
    seconds: float
    shrunk: bool
    """Whether the tree was back to its idle process count before the after reading."""

    @property
    def growth_bytes(self) -> int:
        return self.after.pss_bytes - self.idle.pss_bytes


@dataclass
class Endpoint:
    """One row of the results: a server (and for nbplane, one engine's API on it)."""

    label: str
    kind: str
    """One of :data:`ALL_SERVERS`."""
    server: Server
    base_url: str
    execute: Execute
    engine: str | None = None
    latency: list[float] = field(default_factory=list)
    hops: list[Hops] = field(default_factory=list)
    """Per sequential execution that had a server timing: its hops plus ``client``, the
    client-measured total in ms."""
    rates: dict[int, Rate] = field(default_factory=dict)
    """Executions/s by number of concurrent clients."""
    memory: MemoryRun | None = None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latency) * 1000 if self.latency else None

    def rate(self, clients: int) -> float | None:
        found = self.rates.get(clients)
        return found.per_second if found else None


def new_client(base_url: str, timeout: float) -> httpx.Client:
    # trust_env=False: loopback only, never through a proxy from the environment.
    return httpx.Client(base_url=base_url, timeout=timeout, trust_env=False)


def http_ok(url: str, check: Callable[[httpx.Response], bool] | None = None) -> Callable[[], bool]:
    def ready() -> bool:
        response = httpx.get(url, timeout=2, trust_env=False)
        return response.status_code == 200 and (check is None or check(response))

    return ready


def anchor_env(root: Path, name: str) -> dict[str, str]:
    """The environment minus variables that would steer a tool elsewhere; private Jupyter dirs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NBPLANE_", "JUPYTER", "IPYTHON", "VIRTUAL_ENV", "PYTHON"))
    }
    home = root / f"{name}-home"
    env |= {
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "IPYTHONDIR": str(home / "ipython"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return env


def nbplane_env(root: Path, name: str, pool_idle_seconds: float | None) -> dict[str, str]:
    """An anchor's environment plus nbplane's home, no interactive sessions (neither anchor
    runs any, so no warm JupyterLab pool), and ``PYTHONPATH`` kept: ``PYTHONPATH=src`` times a
    checkout's nbplane. ``pool_idle_seconds``: how soon an engine's idle shell or kernel ends
    (None: nbplane's default)."""
    env = anchor_env(root, name) | {
        "NBPLANE_HOME": str(root / f"{name}-home"),
        "NBPLANE_SESSION_POOL_SIZE": "0",
    }
    if pool_idle_seconds is not None:
        env["NBPLANE_POOL_IDLE_SECONDS"] = f"{pool_idle_seconds:g}"
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def start_failed(server: Server, why: str) -> str:
    return f"{server.label} {why}; exit code {server.process.poll()}; log:\n{server.log_tail()}"


def start_jupyrest(python: Path, root: Path, timeout: float) -> Endpoint:
    notebooks = root / "jupyrest-notebooks"
    write_jupyrest_notebooks(notebooks)
    port = free_port()
    server = Server(
        "jupyrest",
        [str(python), "-c", JUPYREST_LAUNCHER, str(notebooks), str(port)],
        anchor_env(root, "jupyrest"),
        root / "jupyrest.log",
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    listed = http_ok(f"{url}/api/notebooks", lambda r: NAME in r.json().get("notebooks", []))
    if not server.wait_until(listed, timeout):
        server.stop()
        raise BenchError(start_failed(server, f"did not list {NAME!r} within {timeout:.0f} s"))
    return Endpoint("jupyrest 0.2.0", JUPYREST, server, url, untimed(jupyrest_execute))


def start_kernel_gateway(python: Path, root: Path, timeout: float) -> Endpoint:
    seed = root / "kg-notebooks" / f"{NAME}.ipynb"
    write_kg_notebook(seed)
    port = free_port()
    command = [
        str(python.parent / "jupyter"),
        "kernelgateway",
        "--KernelGatewayApp.api=kernel_gateway.notebook_http",
        f"--KernelGatewayApp.seed_uri={seed}",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
    ]
    server = Server("kernel gateway", command, anchor_env(root, "kg"), root / "kg.log", cwd=root)
    url = f"http://127.0.0.1:{port}"
    if not server.wait_until(http_ok(f"{url}/_api/spec/swagger.json"), timeout):
        server.stop()
        raise BenchError(start_failed(server, f"did not answer within {timeout:.0f} s"))
    return Endpoint("kernel gateway", KG, server, url, untimed(kg_execute))


def nbplane_usable(console: Console) -> bool:
    """Whether ``nbplane serve`` exists here; says why not when it does not."""
    command = nbplane_command()
    helped = subprocess.run(
        [*command, "serve", "--help"], capture_output=True, text=True, check=False
    )
    if helped.returncode == 0:
        return True
    last_line = (helped.stderr or helped.stdout).strip().splitlines()[-1:] or ["no output"]
    console.print(
        f"[yellow]nbplane skipped: `{' '.join(command)} serve --help` failed "
        f"(exit {helped.returncode}: {last_line[0]})[/]"
    )
    return False


def start_nbplane(
    root: Path,
    name: str,
    engines: list[str],
    timeout: float,
    console: Console,
    pool_idle_seconds: float | None = None,
) -> list[Endpoint]:
    """One ``nbplane serve`` with one API per engine; one row per engine, or none (with the
    reason and the end of the server's log printed) when it does not start."""
    notebooks = root / f"{name}-notebooks"
    write_nbplane_notebooks(notebooks, engines)
    port = free_port()
    command = [*nbplane_command(), "serve", "--notebooks-dir", str(notebooks)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-auth"]
    env = nbplane_env(root, name, pool_idle_seconds)
    server = Server(name, command, env, root / f"{name}.log", cwd=root)
    url = f"http://127.0.0.1:{port}"
    if not server.wait_until(http_ok(f"{url}/health"), timeout):
        code = server.process.poll()
        server.stop()
        why = f"exited with code {code}" if code is not None else f"not within {timeout:.0f} s"
        console.print(
            f"[yellow]{name} skipped: `nbplane serve` did not answer GET /health "
            f"with 200 ({why}); the end of its log:[/]"
        )
        console.print(server.log_tail(), markup=False, highlight=False)
        return []
    return [
        Endpoint(
            f"nbplane {engine}", NBPLANE, server, url, nbplane_execute(api_name(engine)), engine
        )
        for engine in engines
    ]


# --------------------------------------------------------------------------------------------
# Measurements


def timed_execution(
    endpoint: Endpoint, client: httpx.Client, x: int, timeout: float
) -> tuple[float, Hops | None]:
    started = time.perf_counter()
    hops = endpoint.execute(client, x, timeout)
    return time.perf_counter() - started, hops


def concurrent_run(
    endpoint: Endpoint,
    count: int,
    clients: int,
    max_seconds: float,
    timeout: float,
    first_x: int,
    on_tick: Callable[[], None] | None = None,
) -> Rate:
    """Up to ``count`` executions from ``clients`` threads; no new one starts after
    ``max_seconds``. Raises on the first error."""
    lock = threading.Lock()
    taken = [0]
    finished = [0]
    errors: list[BaseException] = []
    started = time.perf_counter()
    deadline = time.monotonic() + max_seconds

    def client_loop() -> None:
        with new_client(endpoint.base_url, timeout) as client:
            while True:
                with lock:
                    if taken[0] >= count or errors or time.monotonic() > deadline:
                        return
                    index = taken[0]
                    taken[0] += 1
                try:
                    endpoint.execute(client, first_x + index, timeout)
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    finished[0] += 1

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if on_tick:
            on_tick()
        for thread in threads:
            thread.join(0.25)
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"{endpoint.label}: {errors[0]}") from errors[0]
    return Rate(finished[0], seconds)


def settled_memory(endpoint: Endpoint, settle: float) -> TreeMemory:
    time.sleep(settle)
    return tree_memory(endpoint.server.pid)


def memory_run(endpoint: Endpoint, args: argparse.Namespace, first_x: int) -> MemoryRun:
    """Idle tree, ``--memory-runs`` executions from ``--clients`` clients, tree again. An
    nbplane server first waits for its pool to settle too (``--pool-idle-seconds``)."""
    quiet = args.settle + (args.pool_idle_seconds if endpoint.kind == NBPLANE else 0)
    idle = settled_memory(endpoint, quiet)
    peak = [idle.rss_bytes]
    last = [0.0]

    def sample() -> None:
        if time.monotonic() - last[0] >= 0.5:
            last[0] = time.monotonic()
            peak[0] = max(peak[0], tree_memory(endpoint.server.pid).rss_bytes)

    rate = concurrent_run(
        endpoint,
        args.memory_runs,
        args.clients,
        args.max_seconds,
        args.timeout,
        first_x,
        on_tick=sample,
    )
    shrunk = back_to(endpoint, idle.count, args.pool_idle_seconds + args.settle + 30)
    after = settled_memory(endpoint, args.settle)
    return MemoryRun(
        idle, after, max(peak[0], after.rss_bytes), rate.executions, rate.seconds, shrunk
    )


def back_to(endpoint: Endpoint, processes: int, timeout: float) -> bool:
    """Wait until the server's tree has at most ``processes`` processes again (an engine's
    pool grown under load shrinks when idle); False if it did not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while tree_memory(endpoint.server.pid).count > processes:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def fail_run(console: Console, endpoint: Endpoint, exc: BaseException) -> None:
    console.print(f"[red]{endpoint.label} FAILED:[/red] {exc}", highlight=False)
    console.print(
        f"----- {endpoint.server.label} log (last lines) -----\n"
        f"{endpoint.server.log_tail()}\n------",
        highlight=False,
        markup=False,
    )


class Run:
    """The measurements of one run; an nbplane row that fails is reported with its server's
    log and left out of the later phases, an anchor that fails ends the run."""

    def __init__(self, console: Console, args: argparse.Namespace, root: Path) -> None:
        self.console = console
        self.args = args
        self.root = root
        self.ok = True
        self.endpoints: list[Endpoint] = []
        self.live: list[Endpoint] = []
        self.shared_idle: TreeMemory | None = None
        """The tree of the nbplane server that has every engine, idle after their warm-up."""
        self._x = 1000  # a different x for every execution, so a stale answer cannot pass

    def next_x(self, count: int = 1) -> int:
        self._x += count
        return self._x - count

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

    def drop(self, endpoint: Endpoint, exc: BaseException) -> None:
        fail_run(self.console, endpoint, exc)
        if endpoint.kind != NBPLANE:
            raise BenchError(f"{endpoint.label} failed; see above")
        self.ok = False
        if endpoint in self.live:
            self.live.remove(endpoint)
        endpoint.latency.clear()
        endpoint.hops.clear()
        endpoint.rates.clear()
        endpoint.memory = None

    @contextmanager
    def guarded(self, endpoint: Endpoint) -> Iterator[None]:
        try:
            yield
        except (BenchError, httpx.HTTPError) as exc:
            self.drop(endpoint, exc)

    def warm_up(self, endpoint: Endpoint) -> None:
        with self.guarded(endpoint), new_client(endpoint.base_url, self.args.timeout) as client:
            for _ in range(self.args.warmup):
                endpoint.execute(client, self.next_x(), self.args.timeout)

    def measure(self) -> None:
        args = self.args
        self.live = list(self.endpoints)
        for endpoint in list(self.live):
            self.say(f"{endpoint.label}: {args.warmup} warm-up executions")
            self.warm_up(endpoint)
        shared = next((e.server for e in self.live if e.kind == NBPLANE), None)
        if shared is not None:
            time.sleep(args.settle)
            self.shared_idle = tree_memory(shared.pid)
        if args.memory_runs:
            self.memory_phase()
        self.latency_phase()
        for clients in sorted({1, args.clients}):
            self.rate_phase(clients)

    def memory_phase(self) -> None:
        """The anchors on their own server; each nbplane engine on a server of its own, started
        for it and stopped after, so its idle tree is that engine's and no other's."""
        args = self.args
        for endpoint in list(self.live):
            self.say(
                f"{endpoint.label}: memory run, idle tree after {args.settle:.0f} s, then up "
                f"to {args.memory_runs} executions or {args.max_seconds:.0f} s"
            )
            with self.guarded(endpoint):
                if endpoint.kind != NBPLANE:
                    endpoint.memory = memory_run(endpoint, args, self.next_x(args.memory_runs))
                    continue
                assert endpoint.engine is not None
                name = f"nbplane-memory-{endpoint.engine}"
                own = start_nbplane(
                    self.root,
                    name,
                    [endpoint.engine],
                    args.start_timeout,
                    self.console,
                    args.pool_idle_seconds,
                )
                if not own:
                    raise BenchError(f"{name}: did not start")
                try:
                    with new_client(own[0].base_url, args.timeout) as client:
                        for _ in range(args.warmup):
                            own[0].execute(client, self.next_x(), args.timeout)
                    endpoint.memory = memory_run(own[0], args, self.next_x(args.memory_runs))
                except (BenchError, httpx.HTTPError) as exc:
                    fail_run(self.console, own[0], exc)
                    raise BenchError(f"{name} failed; see above") from exc
                finally:
                    own[0].server.stop()

    def latency_phase(self) -> None:
        """Sequential executions, one client per server; the servers take turns, so a change
        in machine load hits all of them alike."""
        args = self.args

        def wanted(endpoint: Endpoint) -> int:
            runs: int = args.jupyrest_runs if endpoint.kind == JUPYREST else args.runs
            return runs

        rounds = max((wanted(e) for e in self.live), default=0)
        if rounds:
            self.say(f"latency: {rounds} rounds, one execution per server each")
        clients = {id(e): new_client(e.base_url, args.timeout) for e in self.live}
        try:
            for index in range(rounds):
                for endpoint in list(self.live):
                    if index >= wanted(endpoint):
                        continue
                    with self.guarded(endpoint):
                        seconds, hops = timed_execution(
                            endpoint, clients[id(endpoint)], self.next_x(), args.timeout
                        )
                        endpoint.latency.append(seconds)
                        if hops is not None:
                            endpoint.hops.append(hops | {"client": seconds * 1000})
        finally:
            for client in clients.values():
                client.close()

    def rate_phase(self, clients: int) -> None:
        args = self.args
        for endpoint in list(self.live):
            count = (
                args.jupyrest_throughput_runs if endpoint.kind == JUPYREST else args.throughput_runs
            )
            self.say(f"{endpoint.label}: {count} executions from {clients} client(s)")
            time.sleep(min(args.settle, 2.0))
            with self.guarded(endpoint):
                endpoint.rates[clients] = concurrent_run(
                    endpoint, count, clients, args.max_seconds, args.timeout, self.next_x(count)
                )


# --------------------------------------------------------------------------------------------
# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def mb(size: float) -> str:
    return f"{size / 2**20:.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def divide(above: float | None, below: float | None) -> float | None:
    return above / below if above is not None and below else None


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"{os.cpu_count()} cores" + (
        f" ({usable} usable by this process)" if usable and usable != os.cpu_count() else ""
    )


def report(
    console: Console, run: Run, args: argparse.Namespace, versions: dict[str, str], load: str
) -> list[tuple[str, bool | None]]:
    endpoints = run.endpoints
    rate_columns = sorted({1, args.clients})
    table = Table(
        title=f"One trivial notebook served as a REST API ({', '.join(versions.values())}; "
        "loopback; latency: sequential, one client)"
    )
    for column in ("server", "median ms", "p90 ms", "min ms", "max ms", "runs"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for clients in rate_columns:
        table.add_column(f"exec/s, {clients} client{'s' if clients > 1 else ''}", justify="right")
    for e in endpoints:
        lat = Summary.of(e.latency) if e.latency else None
        rates = []
        for clients in rate_columns:
            found = e.rates.get(clients)
            rates.append(f"{found.per_second:.1f} ({found.executions})" if found else "-")
        table.add_row(
            e.label,
            ms(lat.median) if lat else "-",
            ms(percentile(e.latency, 0.9)) if lat else "-",
            ms(lat.low) if lat else "-",
            ms(lat.high) if lat else "-",
            str(lat.runs) if lat else "0",
            *rates,
        )
    console.print(table)
    console.print(
        "[dim]exec/s: executions finished / wall time, the count in brackets; like for like: "
        "jupyrest runs each request in a fresh kernel, as nbplane's isolated engines do (no "
        "state shared); Kernel Gateway runs every request in one warm kernel, as the reuse "
        "engines do.[/dim]"
    )
    if args.memory_runs:
        console.print(memory_table(run, args))
        if args.per_process:
            per_process(console, run)
    console.print(breakdown_table(endpoints))
    if any(e.kind != NBPLANE for e in endpoints) and any(e.kind == NBPLANE for e in endpoints):
        console.print(ratios_table(endpoints, args))
    console.print(
        f"machine: {cores()}; load average (1, 5, 15 min) before {load}, after "
        f"{load_average()}. nbplane serve ran with NBPLANE_SESSION_POOL_SIZE=0 (neither "
        "anchor runs interactive sessions)."
    )
    return targets(console, endpoints, args)


def memory_table(run: Run, args: argparse.Namespace) -> Table:
    memory = Table(
        title="Server process tree memory (PSS and RSS summed over the server and every process "
        f"it started), idle after warm-up and {args.settle:g} s (nbplane: "
        f"+{args.pool_idle_seconds:g} s, its pool's idle time here), then after a run of "
        f"executions from {args.clients} clients, once the tree is back to its idle process "
        f"count, and {args.settle:g} s"
    )
    for column in (
        "server",
        "idle PSS MB",
        "idle RSS MB",
        "processes",
        "PSS after MB",
        "PSS growth MB",
        "peak RSS MB",
        "executions",
    ):
        memory.add_column(column, justify="left" if column == "server" else "right")
    for e in run.endpoints:
        m = e.memory
        label = e.label + (" (own server)" if e.kind == NBPLANE else "")
        if m is None:
            memory.add_row(label, *["-"] * 7)
            continue
        capped = "" if m.executions >= args.memory_runs else " (time cap)"
        memory.add_row(
            label,
            mb(m.idle.pss_bytes),
            mb(m.idle.rss_bytes),
            f"{m.idle.count}→{m.after.count}" + ("" if m.shrunk else " (pool not shrunk)"),
            mb(m.after.pss_bytes),
            f"{m.growth_bytes / 2**20:+.1f}",
            mb(m.peak_rss),
            f"{m.executions} in {m.seconds:.0f} s{capped}",
        )
    if run.shared_idle is not None:
        idle = run.shared_idle
        engines = ", ".join(e.engine or "" for e in run.endpoints if e.kind == NBPLANE)
        memory.add_row(
            f"nbplane, one server for {engines}",
            mb(idle.pss_bytes),
            mb(idle.rss_bytes),
            str(idle.count),
            *["-"] * 4,
        )
    return memory


def per_process(console: Console, run: Run) -> None:
    """The processes of each idle tree, those with the same command line on one row: where
    the memory is."""
    trees = [(e.label, e.memory.idle) for e in run.endpoints if e.memory is not None]
    if run.shared_idle is not None:
        trees.append(("nbplane, all engines", run.shared_idle))
    table = Table(title="Idle trees, process by process (same command line: one row)")
    for column in ("tree", "processes", "PSS MB", "RSS MB", "command"):
        table.add_column(column, justify="left" if column in ("tree", "command") else "right")
    for label, tree in trees:
        by_command: dict[str, list[ProcessMemory]] = {}
        for process in tree.processes:
            by_command.setdefault(process.command, []).append(process)
        for command, processes in by_command.items():
            table.add_row(
                label,
                str(len(processes)),
                f"{sum(p.pss_bytes for p in processes) / 2**20:.1f}",
                f"{sum(p.rss_bytes for p in processes) / 2**20:.1f}",
                command,
            )
    console.print(table)


def breakdown_table(endpoints: list[Endpoint]) -> Table:
    """Median ms of each hop of one execution, from ``Server-Timing``; ``http+client`` is the
    client-measured total minus the server's."""
    ours = [e for e in endpoints if e.kind == NBPLANE]
    extra = sorted({hop for e in ours for h in e.hops for hop in h} - {*HOPS, "client"})
    columns = [*HOPS[:-1], *extra, "total", "http+client", "client total"]
    table = Table(
        title="Where one execution's time goes (median ms over the sequential executions, "
        "from the server's Server-Timing header)"
    )
    table.add_column("nbplane engine")
    for column in columns:
        table.add_column(column, justify="right")
    for e in ours:
        if not e.hops:
            table.add_row(e.label, *["n/a"] * len(columns))
            continue
        cells = []
        for column in columns:
            if column == "http+client":
                values = [h["client"] - h["total"] for h in e.hops if "total" in h]
            elif column == "client total":
                values = [h["client"] for h in e.hops]
            else:
                values = [h[column] for h in e.hops if column in h]
            cells.append(f"{statistics.median(values):.1f}" if values else "-")
        table.add_row(e.label, *cells)
    return table


def ratios_table(endpoints: list[Endpoint], args: argparse.Namespace) -> Table:
    kg = next((e for e in endpoints if e.kind == KG), None)
    jupyrest = next((e for e in endpoints if e.kind == JUPYREST), None)
    table = Table(
        title="Ratios to the anchors: median: anchor's / nbplane's; N clients: nbplane's "
        "exec/s / anchor's (both: >1 means nbplane does better); idle PSS: nbplane's / KG's"
    )
    table.add_column("engine")
    columns: list[tuple[str, Callable[[Endpoint, Endpoint], float | None]]] = [
        ("median", lambda ours, anchor: divide(anchor.median_ms, ours.median_ms)),
        ("1 client", lambda ours, anchor: divide(ours.rate(1), anchor.rate(1))),
        (
            f"{args.clients} clients",
            lambda ours, anchor: divide(ours.rate(args.clients), anchor.rate(args.clients)),
        ),
    ]
    anchors = [a for a in (kg, jupyrest) if a is not None]
    for anchor in anchors:
        short = "KG" if anchor.kind == KG else "jupyrest"
        for name, _ in columns:
            table.add_column(f"{short} {name}", justify="right")
        if anchor.kind == KG:
            table.add_column("KG idle PSS", justify="right")
    for ours in (e for e in endpoints if e.kind == NBPLANE):
        cells = []
        for anchor in anchors:
            cells += [ratio(value(ours, anchor)) for _, value in columns]
            if anchor.kind == KG:
                cells.append(ratio(idle_pss_ratio(ours, anchor)))
        table.add_row(ours.engine, *cells)
    return table


def idle_pss_ratio(ours: Endpoint, anchor: Endpoint) -> float | None:
    if ours.memory is None or anchor.memory is None:
        return None
    return ours.memory.idle.pss_bytes / anchor.memory.idle.pss_bytes


Check = tuple[str, float | None, Callable[[float], bool], str]
"""A target: its text, the measured value (None: not measured), the test, the value's format."""


def engine_checks(
    engine: str,
    kind: str,
    ours: Endpoint | None,
    anchors: dict[str, Endpoint],
    clients: int,
) -> list[Check]:
    """The targets of issue 17 for one engine of ``kind`` (reuse or isolated)."""
    kg, jupyrest = anchors.get(KG), anchors.get(JUPYREST)

    def of(e: Endpoint | None, read: Callable[[Endpoint], float | None]) -> float | None:
        return read(e) if e is not None else None

    def both(read: Callable[[Endpoint, Endpoint], float | None], anchor: Endpoint | None) -> Any:
        return read(ours, anchor) if ours is not None and anchor is not None else None

    rate_ratio = both(lambda o, a: divide(o.rate(clients), a.rate(clients)), kg)
    median_ratio = both(lambda o, a: divide(a.median_ms, o.median_ms), kg)
    checks: list[Check] = []
    if kind == "reuse":
        checks += [
            (
                f"{engine} exec/s ({clients} clients) >= {TARGET_REUSE_RATE_RATIO:.0f}x KG's",
                rate_ratio,
                lambda v: v >= TARGET_REUSE_RATE_RATIO,
                "{:.2f}x",
            ),
            (
                f"{engine} median <= KG's / {TARGET_REUSE_MEDIAN_RATIO:.0f}",
                median_ratio,
                lambda v: v >= TARGET_REUSE_MEDIAN_RATIO,
                "KG's / this = {:.2f}",
            ),
        ]
    else:
        checks += [
            (
                f"{engine} median < KG's (warm kernel)",
                median_ratio,
                lambda v: v > 1,
                "KG's / this = {:.2f}",
            ),
            (
                f"{engine} exec/s ({clients} clients) >= KG's",
                rate_ratio,
                lambda v: v >= 1,
                "{:.2f}x",
            ),
        ]
    memory = ours.memory if ours else None
    runs = f"{memory.executions} executions" if memory else "the memory run"
    checks += [
        (
            f"{engine} idle tree PSS <= {TARGET_IDLE_PSS_RATIO:.0f}x KG's",
            both(idle_pss_ratio, kg),
            lambda v: v <= TARGET_IDLE_PSS_RATIO,
            "{:.2f}x",
        ),
        (
            f"{engine} tree PSS growth over {runs} < {TARGET_GROWTH_MB:.0f} MB"
            + (
                f" (the target counts {TARGET_GROWTH_RUNS})"
                if memory and memory.executions < TARGET_GROWTH_RUNS
                else ""
            ),
            of(ours, lambda o: o.memory.growth_bytes / 2**20 if o.memory else None),
            lambda v: v < TARGET_GROWTH_MB,
            "{:+.1f} MB",
        ),
        (
            f"{engine} vs jupyrest: median > {TARGET_JUPYREST_RATIO:.0f}x lower",
            both(lambda o, a: divide(a.median_ms, o.median_ms), jupyrest),
            lambda v: v > TARGET_JUPYREST_RATIO,
            "{:.0f}x",
        ),
        (
            f"{engine} vs jupyrest: exec/s ({clients} clients) > {TARGET_JUPYREST_RATIO:.0f}x",
            both(lambda o, a: divide(o.rate(clients), a.rate(clients)), jupyrest),
            lambda v: v > TARGET_JUPYREST_RATIO,
            "{:.0f}x",
        ),
    ]
    return checks


def targets(
    console: Console, endpoints: list[Endpoint], args: argparse.Namespace
) -> list[tuple[str, bool | None]]:
    """Print every target with MET / NOT MET / NOT MEASURED; return (target, met or None) for
    the issue's engines (``reuse`` and ``isolated``). The kernel engines are checked against
    the same targets for reference and not returned."""
    by_engine = {e.engine: e for e in endpoints if e.kind == NBPLANE and (e.latency or e.memory)}
    anchors = {e.kind: e for e in endpoints if e.kind != NBPLANE}
    results: list[tuple[str, bool | None]] = []
    rows = [(engine, engine, True) for engine in ("reuse", "isolated")]
    rows += [
        (engine, kind, False)
        for engine, kind in REFERENCE_ENGINES.items()
        if engine in args.engines
    ]
    for engine, kind, counted in rows:
        console.print(
            f"[bold]targets, {engine}[/bold]"
            + ("" if counted else f" [dim](reference: the {kind} targets, not counted)[/dim]")
        )
        checks = engine_checks(engine, kind, by_engine.get(engine), anchors, args.clients)
        for text, value, ok, fmt in checks:
            if value is None:
                verdict, met = "[yellow]NOT MEASURED[/yellow]", None
            else:
                met = bool(ok(value))
                shown = "[green]MET[/green]" if met else "[red]NOT MET[/red]"
                verdict = f"{fmt.format(value)}: {shown}"
            console.print(f"  target: {text}: {verdict}", highlight=False)
            if counted:
                results.append((text, met))
    return results


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer executions everywhere, for a look in about 3 minutes: "
        + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in QUICK.items())
        + " (each can still be given)",
    )
    counts = (
        ("runs", "sequential timed executions per server"),
        ("jupyrest_runs", "sequential timed executions for jupyrest, seconds each"),
        ("throughput_runs", "executions for each executions/s figure"),
        ("jupyrest_throughput_runs", "executions for jupyrest's executions/s figures"),
        ("memory_runs", "executions between the idle and the after readings (0: skip memory)"),
    )
    for name, text in counts:
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=None, help=f"{text} ({FULL[name]})"
        )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="no new execution starts after this long in one executions/s or memory run "
        f"of one server ({FULL['max_seconds']:g})",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed executions per server first (default 3)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent clients for executions/s (besides 1) and the memory run (default 8)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(DEFAULT_ENGINES),
        help="nbplane engines, one contract each on the same notebook "
        f"(default {','.join(DEFAULT_ENGINES)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds one execution may take before the run fails (default 120)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds of quiet before each memory reading (default 5)",
    )
    parser.add_argument(
        "--pool-idle-seconds",
        type=float,
        default=5.0,
        help="NBPLANE_POOL_IDLE_SECONDS of the servers of the memory phase: how soon a shell "
        "or kernel the pool added under load ends, so the after reading comes once the pool "
        "is back to its idle size (default 5; nbplane's own default is 60)",
    )
    parser.add_argument(
        "--per-process",
        action="store_true",
        help="also print each process of each idle tree (PSS, RSS, command)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60,
        help="seconds a server may take to start (default 60)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help=f"comma-separated subset of {','.join(ALL_SERVERS)} (default all)",
    )
    parser.add_argument(
        "--jupyrest-venv",
        type=Path,
        default=DEFAULT_JUPYREST_VENV,
        help=f"jupyrest's virtual environment (default {DEFAULT_JUPYREST_VENV})",
    )
    parser.add_argument(
        "--kg-venv",
        type=Path,
        default=DEFAULT_KG_VENV,
        help=f"Kernel Gateway's virtual environment (default {DEFAULT_KG_VENV})",
    )
    parser.add_argument(
        "--check-target",
        action="store_true",
        help="exit 2 when a target of the reuse or isolated engine is missed or not measured",
    )
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(ALL_SERVERS)
    if unknown:
        parser.error(f"unknown --servers {', '.join(sorted(unknown))}")
    args.engines = list(dict.fromkeys(e.strip() for e in args.engines.split(",") if e.strip()))
    if NBPLANE in args.servers and not args.engines:
        parser.error("--engines names no engine")
    at_least_one = (
        args.runs,
        args.jupyrest_runs,
        args.clients,
        args.throughput_runs,
        args.jupyrest_throughput_runs,
    )
    if min(at_least_one) < 1 or args.warmup < 0 or args.memory_runs < 0:
        parser.error(
            "run counts and --clients must be at least 1, --warmup and --memory-runs at least 0"
        )
    return args


def main() -> int:
    args = parse_args()
    # Piped output would be 80 columns wide, too narrow for the tables.
    console = Console(width=None if sys.stdout.isatty() else 160)
    versions: dict[str, str] = {}
    pythons: dict[str, Path] = {}
    if JUPYREST in args.servers:
        pythons[JUPYREST] = ensure_venv(args.jupyrest_venv, [JUPYREST_PACKAGES], "jupyrest")
        versions[JUPYREST] = f"jupyrest {package_version(pythons[JUPYREST], 'jupyrest')}"
    if KG in args.servers:
        pythons[KG] = ensure_venv(args.kg_venv, [KG_PACKAGES], "Kernel Gateway")
        versions[KG] = (
            f"jupyter-kernel-gateway {package_version(pythons[KG], 'jupyter_kernel_gateway')}"
        )
    if NBPLANE in args.servers:
        versions[NBPLANE] = f"nbplane {package_version(Path(sys.executable), 'nbplane')}"
    load = load_average()
    console.print(
        f"machine: {cores()}; load average (1, 5, 15 min): {load}; nbplane serve runs with "
        "NBPLANE_SESSION_POOL_SIZE=0 (no warm JupyterLab servers: neither anchor runs "
        "interactive sessions)",
        highlight=False,
    )
    with tempfile.TemporaryDirectory(prefix="nbplane-bench-api-") as tmp:
        run = Run(console, args, Path(tmp))
        try:
            if KG in args.servers:
                run.endpoints.append(
                    start_kernel_gateway(pythons[KG], run.root, args.start_timeout)
                )
            if JUPYREST in args.servers:
                run.endpoints.append(
                    start_jupyrest(pythons[JUPYREST], run.root, args.start_timeout)
                )
            if NBPLANE in args.servers and nbplane_usable(console):
                run.endpoints += start_nbplane(
                    run.root, "nbplane", args.engines, args.start_timeout, console
                )
            if not run.endpoints:
                console.print("[red]no server to measure[/red]")
                return 1
            run.measure()
        except BenchError as exc:
            console.print(f"[red]FAILED:[/red] {exc}", highlight=False, markup=False)
            return 1
        finally:
            for server in {id(e.server): e.server for e in run.endpoints}.values():
                server.stop()
        results = report(console, run, args, versions, load)
    if not run.ok:
        return 1
    missed = [text for text, met in results if met is not True]
    return 2 if args.check_target and missed else 0


if __name__ == "__main__":
    sys.exit(main())
