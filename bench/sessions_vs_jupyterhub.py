"""Time a notebook session from create to ready: nbplane (local launcher with and without its
warm pool, Kubernetes launcher) against JupyterHub with its local-process spawner, in one run.

Rows (each timed from just before the create request until the user's Jupyter server answered
``GET api/status``, through nbplane's ``/sessions/{id}/`` or JupyterHub's proxy; the launcher
rows at the server's own address with its token):

- ``nbplane API, local, pool N``: ``nbplane serve`` with NBPLANE_SESSION_POOL_SIZE=N;
  ``POST /api/v1/sessions``, then ``GET /api/v1/sessions/{id}`` every 20 ms until ``ready``.
- ``nbplane API, local, no pool``: the same with NBPLANE_SESSION_POOL_SIZE=0.
- ``nbplane API, kubernetes``: NBPLANE_SESSION_LAUNCHER=kubernetes on the loopback test
  cluster (tests/k8s/cluster.py; the node stand-in runs the pod's command as a local process:
  no image pull, no container runtime).
- ``launcher, local, pool N`` / ``launcher, local, no pool``: the LocalLauncher called in this
  process (``start``, then ``poll`` every 20 ms), without the server and its database.
- ``JupyterHub, LocalProcessSpawner``: the anchor. JupyterHub (own virtual environment),
  configurable-http-proxy (npm), the dummy authenticator and ``SimpleLocalProcessSpawner`` (the
  local-process spawner without switching system users, as nbplane's local launcher);
  ``POST /hub/api/users/bench/server``, then ``GET /hub/api/users/bench`` every 20 ms until the
  server is ready, then ``GET /user/bench/api/status`` through the proxy.

After each run the session (server) is deleted, and a pooled row waits until its pool is full
again, so every pooled create finds a server ready, as a pool sized for its traffic would.
The rows take turns within each round, so a change in machine load hits them alike.
Target: ``nbplane API, local, pool`` median under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from _common import (
    Server,
    Summary,
    ensure_venv,
    free_port,
    kubernetes_namespace,
    kubernetes_unavailable,
    package_version,
    percentile,
)
from control_plane import BenchError, Plane, base_env, start_plane
from rich.console import Console
from rich.table import Table

TARGET_SECONDS = 1.0
POLL_SECONDS = 0.02
CACHE = Path.home() / ".cache" / "nbplane-bench"
T = TypeVar("T")


@dataclass
class Row:
    label: str
    seconds: list[float] = field(default_factory=list)
    skipped: str | None = None
    note: str = ""


class Target:
    """One way of getting a session: ``create()`` returns when it answers; ``delete()`` and
    ``settle()`` bring things back to where the next create starts from."""

    row: Row

    def create(self) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def settle(self, timeout: float) -> None:
        """Wait until the next create finds what this one found (a full pool)."""

    def close(self) -> None:
        pass

    def run(self, timed: bool, timeout: float) -> None:
        started = time.perf_counter()
        self.create()
        elapsed = time.perf_counter() - started
        self.delete()
        self.settle(timeout)
        if timed:
            self.row.seconds.append(elapsed)


def answers(url: str, authorization: str) -> bool:
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/api/status",
            trust_env=False,
            timeout=5,
            headers={"Authorization": authorization},
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


# --------------------------------------------------------------------------------------------
# nbplane through its sessions API


class ApiTarget(Target):
    def __init__(self, row: Row, plane: Plane, pool: int, timeout: float) -> None:
        self.row, self.plane, self.pool, self.timeout = row, plane, pool, timeout
        self.client = plane.client(timeout=30)
        self.session: str | None = None
        answer = self.client.get("/api/v1/sessions")
        if answer.status_code != 200:
            raise BenchError(
                f"{row.label}: GET /api/v1/sessions answered HTTP "
                f"{answer.status_code}: {answer.text[:300]}"
            )

    def create(self) -> None:
        answer = self.client.post("/api/v1/sessions", json={})
        if answer.status_code != 201:
            raise BenchError(
                f"{self.row.label}: create answered HTTP {answer.status_code}: {answer.text[:800]}"
            )
        self.session = answer.json()["id"]
        deadline = time.monotonic() + self.timeout
        while True:
            session = self.client.get(f"/api/v1/sessions/{self.session}").json()
            if session.get("ready"):
                break
            if session.get("status") == "failed" or time.monotonic() > deadline:
                raise BenchError(
                    f"{self.row.label}: session {session.get('status')}: {session.get('reason')}"
                )
            time.sleep(POLL_SECONDS)
        if not answers(session["url"], f"Bearer {self.plane.token}"):
            raise BenchError(
                f"{self.row.label}: ready, but {session['url']}api/status does not answer "
                "through nbplane"
            )

    def delete(self) -> None:
        if self.session is None:
            return
        answer = self.client.delete(f"/api/v1/sessions/{self.session}", params={"purge": True})
        if answer.status_code not in (202, 204):
            raise BenchError(
                f"{self.row.label}: delete answered HTTP {answer.status_code}: {answer.text[:300]}"
            )
        deadline = time.monotonic() + self.timeout
        while self.client.get(f"/api/v1/sessions/{self.session}").status_code != 404:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.row.label}: session {self.session} not deleted")
            time.sleep(0.1)
        self.session = None

    def settle(self, timeout: float) -> None:
        if self.pool:
            wait_for_pool(
                self.row.label, self.plane.servers[0].pid, self.plane.home, self.pool, timeout
            )

    def close(self) -> None:
        if self.session is not None:
            self.delete()
        self.client.close()


def listening_pool_servers(server_pid: int, home: Path) -> int:
    """Pooled Jupyter servers under the nbplane server that listen: read from /proc, the way
    an operator would count them."""
    marker = f"--ServerApp.root_dir={home}/session-servers/pool-"
    count = 0
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        try:
            if any(part.startswith(marker) for part in child.cmdline()) and any(
                c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")
            ):
                count += 1
        except psutil.Error:
            continue
    return count


def wait_for_pool(label: str, server_pid: int, home: Path, size: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while listening_pool_servers(server_pid, home.absolute()) < size:
        if time.monotonic() > deadline:
            raise BenchError(f"{label}: the pool did not fill up again within {timeout:g} s")
        time.sleep(0.1)
    time.sleep(0.3)  # it listens a moment before it answers


def nbplane_plane(root: Path, label: str, timeout: float, env: dict[str, str]) -> Plane:
    from _common import sqlite_url

    slug = label.replace(" ", "-").replace(",", "")
    if os.environ.get("PYTHONPATH"):  # a checkout's own sources, for the server too
        env = {**env, "PYTHONPATH": os.environ["PYTHONPATH"]}
    return start_plane(root, label, sqlite_url(root / f"{slug}.db"), 1, timeout, env)


# --------------------------------------------------------------------------------------------
# nbplane's LocalLauncher in this process


class Loop:
    """An event loop in a thread of its own, for the launcher's pool task."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class LauncherTarget(Target):
    def __init__(self, row: Row, home: Path, pool: int, loop: Loop, timeout: float) -> None:
        from nbplane.sessions.launchers.local import LocalLauncher
        from nbplane.settings import Settings

        self.row, self.pool, self.loop, self.timeout = row, pool, loop, timeout
        self.launcher = LocalLauncher(Settings(home=home, session_pool_size=pool))
        self.loop.run(self.launcher.prepare())
        self.state: dict[str, Any] | None = None
        self.spec: Any = None

    def create(self) -> None:
        from nbplane.sessions.launchers.base import LaunchPhase, SessionSpec

        self.spec = SessionSpec(
            id=self.launcher.new_id(),  # a pooled server's, when one is ready
            user="bench",
            resource_class="small",
            cpu=None,
            memory=None,
            image=None,
            token=uuid.uuid4().hex,
            environment={"BENCH": "1"},
        )
        self.state = self.loop.run(self.launcher.start(self.spec))
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.loop.run(self.launcher.poll(self.spec, self.state))
            if status.phase == LaunchPhase.RUNNING and status.ready:
                return
            if status.phase == LaunchPhase.FAILED or time.monotonic() > deadline:
                raise BenchError(f"{self.row.label}: {status.phase}: {status.reason}")
            time.sleep(POLL_SECONDS)

    def delete(self) -> None:
        if self.state is not None:
            self.loop.run(self.launcher.stop(self.spec, self.state, purge=True))
            self.state = None

    def settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.launcher.pooled_pids) < self.pool:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.row.label}: the pool did not fill up within {timeout:g} s")
            time.sleep(0.1)

    def close(self) -> None:
        self.delete()
        self.loop.run(self.launcher.close())


# --------------------------------------------------------------------------------------------
# JupyterHub


HUB_CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"bench"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/homes/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "bench",
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
    "services": ["bench"],
}}]
"""


class HubTarget(Target):
    def __init__(
        self, row: Row, root: Path, python: Path, proxy: Path, timeout: float, start_timeout: float
    ) -> None:
        self.row, self.timeout = row, timeout
        root.mkdir(parents=True)
        self.token = uuid.uuid4().hex
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        (root / "jupyterhub_config.py").write_text(
            HUB_CONFIG.format(
                port=port,
                hub_port=free_port(),
                proxy_api_port=free_port(),
                proxy=str(proxy),
                root=root,
                singleuser=str(python.parent / "jupyterhub-singleuser"),
                args=["--allow-root"] if os.geteuid() == 0 else [],
                token=self.token,
            )
        )
        env = base_env() | {
            "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
            "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
        }
        self.server = Server(
            "JupyterHub",
            [str(python.parent / "jupyterhub"), "-f", str(root / "jupyterhub_config.py")],
            env,
            root / "jupyterhub.log",
            cwd=root,
        )
        self.client = httpx.Client(
            base_url=f"{self.url}/hub/api",
            trust_env=False,
            timeout=30,
            headers={"Authorization": f"token {self.token}"},
        )
        if not self.server.wait_until(
            lambda: self.client.get("/").status_code == 200, start_timeout
        ):
            self.server.stop()
            raise BenchError(
                f"JupyterHub did not answer within {start_timeout:g} s; its log:\n"
                f"{self.server.log_tail()}"
            )
        made = self.client.post("/users/bench")
        if made.status_code not in (201, 409):
            raise BenchError(
                f"JupyterHub: creating the user answered {made.status_code}: {made.text[:300]}"
            )

    def _server(self) -> dict[str, Any] | None:
        user = self.client.get("/users/bench")
        user.raise_for_status()
        servers: dict[str, Any] = user.json().get("servers") or {}
        return servers.get("")

    def create(self) -> None:
        answer = self.client.post("/users/bench/server")
        if answer.status_code not in (201, 202):
            raise BenchError(
                f"JupyterHub: spawn answered {answer.status_code}: {answer.text[:300]}"
            )
        deadline = time.monotonic() + self.timeout
        while not (server := self._server()) or not server.get("ready"):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"JupyterHub: not ready after {self.timeout:g} s; its log:\n"
                    f"{self.server.log_tail()}"
                )
            time.sleep(POLL_SECONDS)
        if not answers(f"{self.url}/user/bench/", f"token {self.token}"):
            raise BenchError("JupyterHub: ready, but /user/bench/api/status does not answer")

    def delete(self) -> None:
        answer = self.client.delete("/users/bench/server")
        if answer.status_code not in (202, 204, 400):
            raise BenchError(f"JupyterHub: stop answered {answer.status_code}: {answer.text[:300]}")
        deadline = time.monotonic() + self.timeout
        while self._server() is not None:
            if time.monotonic() > deadline:
                raise BenchError("JupyterHub: the server did not stop")
            time.sleep(0.1)

    def close(self) -> None:
        with_server = self._server() is not None
        if with_server:
            self.delete()
        self.client.close()
        self.server.stop()


def hub_environment(args: argparse.Namespace) -> tuple[Path, Path]:
    """JupyterHub's Python and configurable-http-proxy, installed once under ~/.cache."""
    python = ensure_venv(
        Path(args.hub_venv), [["jupyterhub>=5,<7", "jupyterlab>=4.2,<5"]], "JupyterHub"
    )
    prefix = Path(args.proxy_prefix)
    proxy = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if not proxy.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BenchError("configurable-http-proxy needs npm, which is not on PATH")
        print(f"Installing configurable-http-proxy into {prefix} (one-off)...", file=sys.stderr)
        done = subprocess.run(
            [npm, "install", "--silent", "--prefix", str(prefix), "configurable-http-proxy@5"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not proxy.exists():
            raise BenchError(f"npm install configurable-http-proxy failed:\n{done.stderr}")
    return python, proxy


# --------------------------------------------------------------------------------------------
# Kubernetes


@contextmanager
def kubernetes_env(root: Path, console: Console) -> Iterator[dict[str, str]]:
    """The loopback cluster, a namespace, and the settings of a server that launches there."""
    with kubernetes_namespace(root, console) as (cluster, namespace):
        yield {
            "NBPLANE_SESSION_LAUNCHER": "kubernetes",
            "NBPLANE_KUBECONFIG": str(cluster.kubeconfig),
            "NBPLANE_KUBERNETES_NAMESPACE": namespace,
            # The node stand-in runs the pod's command here: the "image" is this machine.
            "NBPLANE_SESSION_COMMAND": str(Path(sys.executable).with_name("jupyter-lab")),
            "NBPLANE_KUBERNETES_SESSION_PORTS": "20000-29999",
            "NBPLANE_KUBERNETES_SESSION_URL_TEMPLATE": "http://127.0.0.1:{port}/",
        }


# --------------------------------------------------------------------------------------------
# Report


def spread(values: list[float]) -> list[str]:
    if not values:
        return ["-"] * 4
    summary = Summary.of(values)
    return [
        f"{summary.median:.3f}",
        f"{percentile(values, 0.9):.3f}",
        f"{summary.low:.3f}",
        f"{summary.high:.3f}",
    ]


def report(console: Console, rows: list[Row], args: argparse.Namespace) -> Row | None:
    table = Table(
        title=f"Create to ready: a user's Jupyter server answering api/status "
        f"({args.runs} runs each after {args.warmup} warm-up; seconds)"
    )
    table.add_column("how the session starts")
    for column in ("median", "p90", "min", "max", "runs"):
        table.add_column(column, justify="right")
    for row in rows:
        if row.skipped:
            table.add_row(row.label, *["-"] * 4, "skipped")
        else:
            table.add_row(row.label, *spread(row.seconds), str(len(row.seconds)))
    console.print(table)
    for row in rows:
        if row.skipped:
            console.print(f"[yellow]{row.label}: skipped: {row.skipped}[/yellow]", highlight=False)
    hub = next((row for row in rows if row.label.startswith("JupyterHub") and row.seconds), None)
    ours = [row for row in rows if not row.label.startswith("JupyterHub") and row.seconds]
    if hub and ours:
        ratios = Table(title="JupyterHub's median / nbplane's median (>1: nbplane is ready sooner)")
        ratios.add_column("nbplane")
        ratios.add_column("ratio", justify="right")
        ratios.add_column("difference, s", justify="right")
        base = Summary.of(hub.seconds).median
        for row in ours:
            median = Summary.of(row.seconds).median
            ratios.add_row(row.label, f"{base / median:.2f}x", f"{median - base:+.3f}")
        console.print(ratios)
    return next(
        (row for row in rows if row.label.startswith("nbplane API, local, pool") and row.seconds),
        None,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed creates per row (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed creates per row first (default 1)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=2,
        help="NBPLANE_SESSION_POOL_SIZE of the pooled rows (default 2)",
    )
    parser.add_argument(
        "--no-api", action="store_true", help="leave out the rows through nbplane's sessions API"
    )
    parser.add_argument(
        "--no-launcher",
        action="store_true",
        help="leave out the rows that call the LocalLauncher in this process",
    )
    parser.add_argument(
        "--no-kubernetes", action="store_true", help="leave out the Kubernetes launcher row"
    )
    parser.add_argument("--no-jupyterhub", action="store_true", help="leave out JupyterHub")
    parser.add_argument(
        "--hub-venv",
        default=str(CACHE / "jupyterhub-venv"),
        help="where JupyterHub is installed (created on first use)",
    )
    parser.add_argument(
        "--proxy-prefix",
        default=str(CACHE / "configurable-http-proxy"),
        help="npm prefix of configurable-http-proxy (installed on first use)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds a create may take before the run fails (default 120)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60,
        help="seconds a server (nbplane, JupyterHub) may take to answer",
    )
    parser.add_argument(
        "--check-target",
        action="store_true",
        help=f"exit 2 when the pooled local median is not under {TARGET_SECONDS:g} s",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.pool_size < 1:
        parser.error("--runs and --pool-size must be at least 1, --warmup at least 0")
    return args


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> int:
    args = parse_args()
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(
        f"[dim]nbplane {package_version(Path(sys.executable), 'nbplane')}; "
        f"{os.cpu_count()} CPUs; {load_average()} at the start[/dim]"
    )
    pool = args.pool_size
    rows: list[Row] = []
    targets: list[Target] = []
    planes: list[Plane] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nbplane-bench-sessions-") as tmp, ExitStack() as stack:
        root = Path(tmp)

        def add(label: str, make: Callable[[Row], Target]) -> None:
            row = Row(label)
            rows.append(row)
            try:
                targets.append(make(row))
                stack.callback(targets[-1].close)
            except BenchError as exc:
                row.skipped = str(exc)

        def api(label: str, env: dict[str, str], size: int) -> Callable[[Row], Target]:
            def make(row: Row) -> Target:
                plane = nbplane_plane(
                    root, label, args.start_timeout, {"NBPLANE_SESSION_POOL_SIZE": str(size), **env}
                )
                planes.append(plane)
                stack.callback(plane.stop)
                target = ApiTarget(row, plane, size if "local" in label else 0, args.timeout)
                target.settle(args.timeout)
                return target

            return make

        if not args.no_api:
            add(f"nbplane API, local, pool {pool}", api("api local pool", {}, pool))
            add("nbplane API, local, no pool", api("api local", {}, 0))
        if not args.no_launcher:
            loop = Loop()
            stack.callback(loop.close)
            for size, label in (
                (pool, f"launcher, local, pool {pool}"),
                (0, "launcher, local, no pool"),
            ):
                add(label, partial(_launcher, root=root, size=size, loop=loop, args=args))
        if not args.no_api:
            why = kubernetes_unavailable(
                args.no_kubernetes,
                "nbplane.sessions.launchers.kubernetes",
                "the Kubernetes session launcher",
            )
            if why is None:
                try:
                    env = stack.enter_context(kubernetes_env(root, console))
                    add("nbplane API, kubernetes", api("api kubernetes", env, 0))
                except Exception as exc:  # the cluster failing to start, say
                    rows.append(Row("nbplane API, kubernetes", skipped=f"{exc!r}"))
            else:
                rows.append(Row("nbplane API, kubernetes", skipped=why))
        if not args.no_jupyterhub:
            try:
                python, proxy = hub_environment(args)
                label = f"JupyterHub {package_version(python, 'jupyterhub')}, LocalProcessSpawner"
                add(
                    label,
                    lambda row: HubTarget(
                        row, root / "hub", python, proxy, args.timeout, args.start_timeout
                    ),
                )
            except BenchError as exc:
                rows.append(Row("JupyterHub, LocalProcessSpawner", skipped=str(exc)))

        console.print(
            f"[dim]{args.warmup} warm-up and {args.runs} timed rounds of {len(targets)} rows[/dim]"
        )
        broken: set[int] = set()
        for index in range(args.warmup + args.runs):
            for number, target in enumerate(targets):
                if number in broken:
                    continue
                try:
                    target.run(timed=index >= args.warmup, timeout=args.timeout)
                except (BenchError, httpx.HTTPError) as exc:
                    failures.append(f"{target.row.label}: {exc}")
                    broken.add(number)
        best = report(console, rows, args)
        console.print(
            f"[dim]{os.cpu_count()} CPUs; {load_average()} at the end (other work on "
            "this machine shows in the figures)[/dim]"
        )
        if failures:
            console.print("\n[red]FAILED:[/red]")
            for failure in failures:
                console.print(f"- {failure}", highlight=False, markup=False)
            for plane in planes:
                console.print(plane.logs(), highlight=False, markup=False)
            return 1
    if best is None:
        console.print("[yellow]target NOT MEASURED: no pooled local row through the API[/yellow]")
        return 2 if args.check_target else 0
    median = Summary.of(best.seconds).median
    met = median < TARGET_SECONDS
    console.print(
        f"target: {best.label} median {median:.3f} s "
        f"{'<' if met else '>='} {TARGET_SECONDS:g} s: "
        f"{'[green]met[/green]' if met else '[red]MISSED[/red]'}"
    )
    return 0 if met or not args.check_target else 2


def _launcher(row: Row, root: Path, size: int, loop: Loop, args: argparse.Namespace) -> Target:
    target = LauncherTarget(row, root / f"home-launcher-{size}", size, loop, args.timeout)
    target.settle(args.timeout)
    return target


if __name__ == "__main__":
    sys.exit(main())
