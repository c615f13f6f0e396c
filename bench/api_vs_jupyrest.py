"""Serve one trivial notebook (``y = 2x``) as a REST API with nbplane, jupyrest and Kernel Gateway.

Every server is started by this script on a free 127.0.0.1 port and stopped at the end:
jupyrest 0.2.0 and Jupyter Kernel Gateway (notebook-http mode), each from its own virtual
environment, and ``nbplane serve`` with two contracts on the same notebook, one per engine
(``isolated`` and ``reuse``). For each server it measures the latency from the POST until the
output has been read (sequential requests, the servers taking turns), executions per second
with concurrent clients, and the RSS of the server's process tree before and after a run of
many executions. Every answer is checked (``y == 2 * x`` for a different ``x`` each time).
Targets: nbplane isolated median <= 50 ms and >= 20 executions/s; nbplane reuse median <= 5 ms
and >= 150 executions/s; memory flat (tree RSS after <= 1.2x before) for both engines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
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

CACHE = Path.home() / ".cache" / "nbplane-bench"
DEFAULT_JUPYREST_VENV = CACHE / "jupyrest-venv"
DEFAULT_KG_VENV = CACHE / "kernel-gateway-venv"
JUPYREST_PACKAGES = ("jupyrest==0.2.0",)
# Kernel Gateway does not depend on ipykernel, but without it there is no python3 kernel.
KG_PACKAGES = ("jupyter_kernel_gateway", "ipykernel")

TARGET_ISOLATED_MEDIAN_MS = 50.0
TARGET_ISOLATED_RATE = 20.0
TARGET_REUSE_MEDIAN_MS = 5.0
TARGET_REUSE_RATE = 150.0
TARGET_MEMORY_GROWTH = 1.2

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

ALL_SERVERS = ("kernel-gateway", "jupyrest", "nbplane")


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


def write_nbplane_notebooks(directory: Path) -> None:
    cells = notebook_cells("from nbplane import save_output")
    for name, engine in ((NAME, "isolated"), (f"{NAME}_reuse", "reuse")):
        write_notebook(directory / f"{name}.ipynb", cells)
        write_contract(directory / f"{name}.config.json", engine)


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


NBPLANE_FINAL = ("completed", "failed", "timed_out", "cancelled")


def nbplane_v1_execute(name: str) -> Callable[[httpx.Client, int, float], None]:
    """nbplane's own API: POST ``?wait=`` answers with the finished execution and its output."""

    def execute(client: httpx.Client, x: int, timeout: float) -> None:
        record = expect(
            client.post(
                f"/api/v1/notebooks/{name}/executions",
                params={"wait": min(timeout, 300)},
                json={"parameters": {"x": x}},
            ),
            (200, 201),
            f"nbplane POST {name}",
        )
        if str(record.get("status")).lower() not in NBPLANE_FINAL:
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

    return execute


def nbplane_jupyrest_execute(name: str) -> Callable[[httpx.Client, int, float], None]:
    """nbplane's jupyrest-compatible API, used the way a jupyrest client does (POST, then poll)."""

    def execute(client: httpx.Client, x: int, timeout: float) -> None:
        created = expect(
            client.post("/api/NotebookExecutions", json={"notebook": name, "parameters": {"x": x}}),
            (200, 201, 202),
            f"nbplane POST /api/NotebookExecutions {name}",
        )
        eid = created["id"]
        record = poll(
            lambda: expect(
                client.get(
                    "/api/NotebookExecutions", params={"executionId": eid, "output": "true"}
                ),
                (200,),
                "nbplane GET /api/NotebookExecutions",
            ),
            lambda r: str(r.get("status")).lower() in NBPLANE_FINAL,
            timeout,
            f"nbplane execution {eid}",
        )
        if str(record.get("status")).lower() != "completed":
            raise BenchError(f"nbplane {name} execution did not complete: {record!r}")
        check_output(record.get("output"), x, f"nbplane {name} (jupyrest API)")

    return execute


# --------------------------------------------------------------------------------------------
# Servers


@dataclass
class Endpoint:
    """One row of the results: a server and the notebook API it is measured on."""

    label: str
    server: Server
    base_url: str
    execute: Callable[[httpx.Client, int, float], None]
    latency: list[float] = field(default_factory=list)
    rate: Rate | None = None
    memory: MemoryRun | None = None


@dataclass(frozen=True)
class Rate:
    executions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds


@dataclass(frozen=True)
class MemoryRun:
    before: TreeMemory
    after: TreeMemory
    peak_rss: int
    executions: int
    seconds: float

    @property
    def growth(self) -> float:
        return self.after.rss_bytes / self.before.rss_bytes


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
    return Endpoint("jupyrest 0.2.0", server, url, jupyrest_execute)


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
    return Endpoint("kernel gateway", server, url, kg_execute)


def start_nbplane(root: Path, api: str, timeout: float, console: Console) -> list[Endpoint]:
    """Both nbplane rows (one server), or none with the reason printed when it is not usable."""
    command = nbplane_command()
    env = anchor_env(root, "nbplane") | {"NBPLANE_HOME": str(root / "nbplane-home")}
    helped = subprocess.run(
        [*command, "serve", "--help"], env=env, capture_output=True, text=True, check=False
    )
    if helped.returncode != 0:
        last_line = (helped.stderr or helped.stdout).strip().splitlines()[-1:] or ["no output"]
        console.print(
            f"[yellow]nbplane skipped: `{' '.join(command)} serve --help` failed "
            f"(exit {helped.returncode}: {last_line[0]}); is `nbplane serve` written yet?[/]"
        )
        return []
    notebooks = root / "nbplane-notebooks"
    write_nbplane_notebooks(notebooks)
    port = free_port()
    server = Server(
        "nbplane",
        [
            *command,
            "serve",
            "--notebooks-dir",
            str(notebooks),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-auth",
        ],
        env,
        root / "nbplane.log",
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    if not server.wait_until(http_ok(f"{url}/health"), timeout):
        code = server.process.poll()
        server.stop()
        why = f"exited with code {code}" if code is not None else f"not within {timeout:.0f} s"
        console.print(
            f"[yellow]nbplane skipped: `nbplane serve` did not answer GET /health "
            f"with 200 ({why}); the end of its log:[/]"
        )
        console.print(server.log_tail(), markup=False, highlight=False)
        return []
    if api == "auto":
        api = "v1" if http_ok(f"{url}/api/v1/notebooks")() else "jupyrest"
    make = nbplane_v1_execute if api == "v1" else nbplane_jupyrest_execute
    suffix = "" if api == "v1" else ", jupyrest API"
    return [
        Endpoint(f"nbplane isolated{suffix}", server, url, make(NAME)),
        Endpoint(f"nbplane reuse{suffix}", server, url, make(f"{NAME}_reuse")),
    ]


# --------------------------------------------------------------------------------------------
# Measurements


def timed_execution(endpoint: Endpoint, client: httpx.Client, x: int, timeout: float) -> float:
    started = time.perf_counter()
    endpoint.execute(client, x, timeout)
    return time.perf_counter() - started


def concurrent_run(
    endpoint: Endpoint,
    count: int,
    clients: int,
    max_seconds: float,
    timeout: float,
    first_x: int,
    on_tick: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Up to ``count`` executions from ``clients`` threads; no new one starts after
    ``max_seconds``. Returns (executions finished, wall seconds). Raises on the first error."""
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
    return finished[0], seconds


def settled_memory(endpoint: Endpoint, settle: float) -> TreeMemory:
    time.sleep(settle)
    return tree_memory(endpoint.server.pid)


def memory_run(endpoint: Endpoint, args: argparse.Namespace, first_x: int) -> MemoryRun:
    before = settled_memory(endpoint, args.settle)
    peak = [before.rss_bytes]
    last = [0.0]

    def sample() -> None:
        if time.monotonic() - last[0] >= 0.5:
            last[0] = time.monotonic()
            peak[0] = max(peak[0], tree_memory(endpoint.server.pid).rss_bytes)

    done, seconds = concurrent_run(
        endpoint,
        args.memory_runs,
        args.clients,
        args.max_seconds,
        args.timeout,
        first_x,
        on_tick=sample,
    )
    after = settled_memory(endpoint, args.settle)
    return MemoryRun(before, after, max(peak[0], after.rss_bytes), done, seconds)


def fail_run(console: Console, endpoint: Endpoint, exc: BaseException) -> None:
    console.print(f"[red]{endpoint.label} FAILED:[/red] {exc}", highlight=False)
    console.print(
        f"----- {endpoint.server.label} log (last lines) -----\n"
        f"{endpoint.server.log_tail()}\n------",
        highlight=False,
        markup=False,
    )


# --------------------------------------------------------------------------------------------
# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def mb(size: int) -> str:
    return f"{size / 2**20:.0f}"


def report(
    console: Console, endpoints: list[Endpoint], args: argparse.Namespace, versions: dict[str, str]
) -> list[tuple[str, bool | None]]:
    title = (
        f"One trivial notebook served as a REST API ({', '.join(versions.values())}; "
        f"loopback; {args.clients} concurrent clients for executions/s)"
    )
    table = Table(title=title)
    for column in (
        "server",
        "median ms",
        "p90 ms",
        "min ms",
        "max ms",
        "runs",
        f"exec/s ({args.clients} clients)",
        "executions",
    ):
        table.add_column(column, justify="left" if column == "server" else "right")
    for e in endpoints:
        lat = Summary.of(e.latency) if e.latency else None
        table.add_row(
            e.label,
            ms(lat.median) if lat else "-",
            ms(percentile(e.latency, 0.9)) if lat else "-",
            ms(lat.low) if lat else "-",
            ms(lat.high) if lat else "-",
            str(lat.runs) if lat else "0",
            f"{e.rate.per_second:.2f}" if e.rate else "-",
            f"{e.rate.executions} in {e.rate.seconds:.1f} s" if e.rate else "-",
        )
    console.print(table)

    if args.memory_runs:
        console.print(memory_table(endpoints, args))

    by_label = {e.label.split(",")[0]: e for e in endpoints}
    isolated, reuse = by_label.get("nbplane isolated"), by_label.get("nbplane reuse")
    anchors = [e for e in endpoints if not e.label.startswith("nbplane")]
    if anchors and (isolated or reuse):
        ratios = Table(title="Ratios against nbplane (>1 means nbplane is better)")
        ratios.add_column("anchor")
        for engine in ("isolated", "reuse"):
            ratios.add_column(f"this median / nbplane {engine} median", justify="right")
            ratios.add_column(f"nbplane {engine} exec/s / this exec/s", justify="right")
        for anchor in anchors:
            cells = []
            for ours in (isolated, reuse):
                cells.append(latency_ratio(anchor, ours))
                cells.append(rate_ratio(anchor, ours))
            ratios.add_row(anchor.label, *cells)
        console.print(ratios)
        console.print(
            "[dim]Like for like: jupyrest runs each request in a fresh kernel, as "
            "nbplane isolated does (state never shared); Kernel Gateway runs every "
            "request in one warm kernel, as nbplane reuse does.[/dim]"
        )
    return targets(console, isolated, reuse)


def memory_table(endpoints: list[Endpoint], args: argparse.Namespace) -> Table:
    memory = Table(
        title="Server process tree memory (RSS summed over the server and its "
        "kernels), before and after a run of executions"
    )
    for column in (
        "server",
        "RSS before MB",
        "RSS after MB",
        "after / before",
        "peak MB",
        "PSS before→after MB",
        "processes",
        "executions",
    ):
        memory.add_column(column, justify="left" if column == "server" else "right")
    for e in endpoints:
        m = e.memory
        if m is None:
            memory.add_row(e.label, *["-"] * 7)
            continue
        capped = "" if m.executions >= args.memory_runs else " (time cap)"
        memory.add_row(
            e.label,
            mb(m.before.rss_bytes),
            mb(m.after.rss_bytes),
            f"{m.growth:.2f}x",
            mb(m.peak_rss),
            f"{mb(m.before.pss_bytes)}→{mb(m.after.pss_bytes)}",
            f"{m.before.processes}→{m.after.processes}",
            f"{m.executions} in {m.seconds:.0f} s{capped}",
        )
    return memory


def latency_ratio(anchor: Endpoint, ours: Endpoint | None) -> str:
    if not (ours and ours.latency and anchor.latency):
        return "-"
    return f"{Summary.of(anchor.latency).median / Summary.of(ours.latency).median:.1f}x"


def rate_ratio(anchor: Endpoint, ours: Endpoint | None) -> str:
    if not (ours and ours.rate and anchor.rate):
        return "-"
    return f"{ours.rate.per_second / anchor.rate.per_second:.1f}x"


def targets(
    console: Console, isolated: Endpoint | None, reuse: Endpoint | None
) -> list[tuple[str, bool | None]]:
    """Print every target with MET / NOT MET / NOT MEASURED; return (target, met or None)."""
    results: list[tuple[str, bool | None]] = []

    def median_ms(e: Endpoint | None) -> float | None:
        return Summary.of(e.latency).median * 1000 if e and e.latency else None

    checks: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        (
            f"nbplane isolated median <= {TARGET_ISOLATED_MEDIAN_MS:.0f} ms",
            median_ms(isolated),
            lambda v: v <= TARGET_ISOLATED_MEDIAN_MS,
            "{:.1f} ms",
        ),
        (
            f"nbplane isolated >= {TARGET_ISOLATED_RATE:.0f} executions/s",
            isolated.rate.per_second if isolated and isolated.rate else None,
            lambda v: v >= TARGET_ISOLATED_RATE,
            "{:.1f}/s",
        ),
        (
            f"nbplane reuse median <= {TARGET_REUSE_MEDIAN_MS:.0f} ms",
            median_ms(reuse),
            lambda v: v <= TARGET_REUSE_MEDIAN_MS,
            "{:.1f} ms",
        ),
        (
            f"nbplane reuse >= {TARGET_REUSE_RATE:.0f} executions/s",
            reuse.rate.per_second if reuse and reuse.rate else None,
            lambda v: v >= TARGET_REUSE_RATE,
            "{:.1f}/s",
        ),
    ]
    for engine, e in (("isolated", isolated), ("reuse", reuse)):
        checks.append(
            (
                f"nbplane {engine} memory flat: tree RSS after <= {TARGET_MEMORY_GROWTH}x before",
                e.memory.growth if e and e.memory else None,
                lambda v: v <= TARGET_MEMORY_GROWTH,
                "{:.2f}x",
            )
        )
    for text, value, ok, fmt in checks:
        if value is None:
            verdict, met = "[yellow]NOT MEASURED[/yellow]", None
        else:
            met = bool(ok(value))
            shown = "[green]MET[/green]" if met else "[red]NOT MET[/red]"
            verdict = f"{fmt.format(value)}: {shown}"
        console.print(f"target: {text}: {verdict}")
        results.append((text, met))
    return results


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=50, help="sequential timed executions per server (default 50)"
    )
    parser.add_argument(
        "--jupyrest-runs",
        type=int,
        default=10,
        help="sequential timed executions for jupyrest, seconds each (default 10)",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed executions per server first (default 3)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent clients for executions/s and memory (default 8)",
    )
    parser.add_argument(
        "--throughput-runs", type=int, default=200, help="executions for executions/s (default 200)"
    )
    parser.add_argument(
        "--jupyrest-throughput-runs",
        type=int,
        default=24,
        help="executions for jupyrest's executions/s (default 24)",
    )
    parser.add_argument(
        "--memory-runs",
        type=int,
        default=1000,
        help="executions between the two RSS readings (default 1000; 0: skip)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120,
        help="no new execution starts after this long in one executions/s or "
        "memory run of one server (default 120)",
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
        default=2.0,
        help="seconds of quiet before each RSS reading (default 2)",
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
        "--nbplane-api",
        choices=("auto", "v1", "jupyrest"),
        default="auto",
        help="nbplane's /api/v1 or its jupyrest-compatible API "
        "(default auto: /api/v1 when it answers)",
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
        help="exit 2 when nbplane misses a target or could not be measured",
    )
    args = parser.parse_args()
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(ALL_SERVERS)
    if unknown:
        parser.error(f"unknown --servers {', '.join(sorted(unknown))}")
    counts = (
        args.runs,
        args.jupyrest_runs,
        args.clients,
        args.throughput_runs,
        args.jupyrest_throughput_runs,
    )
    if min(counts) < 1 or args.warmup < 0 or args.memory_runs < 0:
        parser.error(
            "run counts and --clients must be at least 1, --warmup and --memory-runs at least 0"
        )
    return args


def main() -> int:
    args = parse_args()
    # Piped output would be 80 columns wide, too narrow for the tables.
    console = Console(width=None if sys.stdout.isatty() else 140)
    versions: dict[str, str] = {}
    pythons: dict[str, Path] = {}
    if "jupyrest" in args.servers:
        pythons["jupyrest"] = ensure_venv(args.jupyrest_venv, [JUPYREST_PACKAGES], "jupyrest")
        versions["jupyrest"] = f"jupyrest {package_version(pythons['jupyrest'], 'jupyrest')}"
    if "kernel-gateway" in args.servers:
        pythons["kg"] = ensure_venv(args.kg_venv, [KG_PACKAGES], "Kernel Gateway")
        versions["kg"] = (
            f"jupyter-kernel-gateway {package_version(pythons['kg'], 'jupyter_kernel_gateway')}"
        )
    if "nbplane" in args.servers:
        versions["nbplane"] = f"nbplane {package_version(Path(sys.executable), 'nbplane')}"
    endpoints: list[Endpoint] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="nbplane-bench-api-") as tmp:
        root = Path(tmp)
        try:
            if "kernel-gateway" in args.servers:
                endpoints.append(start_kernel_gateway(pythons["kg"], root, args.start_timeout))
            if "jupyrest" in args.servers:
                endpoints.append(start_jupyrest(pythons["jupyrest"], root, args.start_timeout))
            if "nbplane" in args.servers:
                endpoints += start_nbplane(root, args.nbplane_api, args.start_timeout, console)
            if not endpoints:
                console.print("[red]no server to measure[/red]")
                return 1
            failed = not measure(console, endpoints, args)
        except BenchError as exc:
            console.print(f"[red]FAILED:[/red] {exc}", highlight=False, markup=False)
            return 1
        finally:
            for server in {id(e.server): e.server for e in endpoints}.values():
                server.stop()
        results = report(console, endpoints, args, versions)
    if failed:
        return 1
    missed = [text for text, met in results if met is not True]
    return 2 if args.check_target and missed else 0


def measure(console: Console, endpoints: list[Endpoint], args: argparse.Namespace) -> bool:
    """Run every phase on every endpoint; an nbplane endpoint that fails is dropped from the
    later phases (its failure printed); an anchor that fails ends the run. False if any failed."""
    ok = True
    live = list(endpoints)
    x = [1000]  # a different x for every execution, so a stale answer cannot pass

    def next_x(count: int = 1) -> int:
        x[0] += count
        return x[0] - count

    def drop(endpoint: Endpoint, exc: BaseException) -> None:
        nonlocal ok
        fail_run(console, endpoint, exc)
        if not endpoint.label.startswith("nbplane"):
            raise BenchError(f"{endpoint.label} failed; see above")
        ok = False
        live.remove(endpoint)
        endpoint.latency.clear()
        endpoint.rate = endpoint.memory = None

    for endpoint in list(live):
        console.print(f"[dim]{endpoint.label}: {args.warmup} warm-up executions[/dim]")
        try:
            with new_client(endpoint.base_url, args.timeout) as client:
                for _ in range(args.warmup):
                    timed_execution(endpoint, client, next_x(), args.timeout)
        except (BenchError, httpx.HTTPError) as exc:
            drop(endpoint, exc)

    if args.memory_runs:
        for endpoint in list(live):
            console.print(
                f"[dim]{endpoint.label}: memory run, up to {args.memory_runs} "
                f"executions or {args.max_seconds:.0f} s[/dim]"
            )
            try:
                endpoint.memory = memory_run(endpoint, args, next_x(args.memory_runs))
            except (BenchError, httpx.HTTPError) as exc:
                drop(endpoint, exc)

    # Sequential latency: the servers take turns, so a change in machine load hits all alike.
    def wanted(endpoint: Endpoint) -> int:
        runs: int = args.jupyrest_runs if endpoint.label.startswith("jupyrest") else args.runs
        return runs

    rounds = max((wanted(e) for e in live), default=0)
    if rounds:
        console.print(f"[dim]latency: {rounds} rounds, one execution per server each[/dim]")
    clients = {id(e): new_client(e.base_url, args.timeout) for e in live}
    try:
        for index in range(rounds):
            for endpoint in list(live):
                if index >= wanted(endpoint):
                    continue
                try:
                    endpoint.latency.append(
                        timed_execution(endpoint, clients[id(endpoint)], next_x(), args.timeout)
                    )
                except (BenchError, httpx.HTTPError) as exc:
                    drop(endpoint, exc)
    finally:
        for client in clients.values():
            client.close()

    for endpoint in list(live):
        count = (
            args.jupyrest_throughput_runs
            if endpoint.label.startswith("jupyrest")
            else args.throughput_runs
        )
        console.print(
            f"[dim]{endpoint.label}: {count} executions from {args.clients} clients[/dim]"
        )
        time.sleep(args.settle)
        try:
            done, seconds = concurrent_run(
                endpoint, count, args.clients, args.max_seconds, args.timeout, next_x(count)
            )
            endpoint.rate = Rate(done, seconds)
        except (BenchError, httpx.HTTPError) as exc:
            drop(endpoint, exc)
    return ok


if __name__ == "__main__":
    sys.exit(main())
