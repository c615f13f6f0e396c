"""Helpers shared by the benchmarks: notebook fixtures, locating nbplane, timed commands, the
loopback Kubernetes test cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
JOB_NOTEBOOK = "10_job.ipynb"
JOB_CONFIG = "[owner]\nteam = bench\n"


def code_cell(cell_id: str, source: str, tags: Sequence[str] = ("vdk",)) -> dict[str, Any]:
    """A tagged nbformat-4.5 code cell whose source is stored as a list of lines.

    VDK only recognises ``%%vdksql`` cells when the source is a list of lines.
    """
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"tags": list(tags)},
        "execution_count": None,
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def write_job(directory: Path, cells: Sequence[dict[str, Any]]) -> Path:
    """Write a one-notebook job (``10_job.ipynb`` plus ``config.ini``) and return the notebook."""
    directory.mkdir(parents=True, exist_ok=True)
    notebook = {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = directory / JOB_NOTEBOOK
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    (directory / "config.ini").write_text(JOB_CONFIG, encoding="utf-8")
    return path


def replace_cell_source(notebook: Path, cell_id: str, source: str) -> None:
    """Rewrite one cell's source in place, as a person editing the notebook would."""
    document = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in document["cells"]:
        if cell.get("id") == cell_id:
            cell["source"] = source.splitlines(keepends=True)
            break
    else:
        raise KeyError(f"{notebook.name} has no cell {cell_id!r}")
    notebook.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def nbplane_command() -> list[str]:
    """The nbplane CLI of the running Python environment: its script, else ``python -m``.

    A script installed before nbplane/_launch.py existed enters the CLI directly, never
    through a warm runner: ``python -m nbplane`` then (reinstall to get the new script)."""
    script = Path(sys.executable).parent / ("nbplane.exe" if os.name == "nt" else "nbplane")
    if not script.exists():
        found = shutil.which("nbplane")
        script = Path(found) if found else script
    if script.parent == Path(sys.executable).parent and script.exists():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if "nbplane._launch" in script.read_text(encoding="utf-8"):
                return [str(script)]
    return [sys.executable, "-m", "nbplane"]


PYCACHE = Path.home() / ".cache" / "nbplane-bench" / "pycache"


def compiled(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a command that runs from compiled bytecode, as installed packages do: without
    it a ``PYTHONPATH=src`` checkout (or ``PYTHONDONTWRITEBYTECODE``) compiles nbplane's modules
    on every run. An untimed first run fills ``PYCACHE``, outside the checkout and venvs."""
    kept = {name: value for name, value in env.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return kept | {"PYTHONPYCACHEPREFIX": str(PYCACHE)}


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Timed:
    """One finished command: its wall time, exit code, combined output and the CPU time (user
    plus system) of it and its children, which a busy machine inflates less than wall time."""

    label: str
    command: list[str]
    seconds: float
    returncode: int
    output: str
    cpu_seconds: float = 0.0


def run_timed(
    label: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> Timed:
    """Run a command to completion, timing the whole process."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    return Timed(label, command, elapsed, done.returncode, done.stdout, cpu)


def _children_cpu() -> float:
    """User plus system CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fail(result: Timed, why: str) -> None:
    """Print what went wrong with a run, including its full output, and exit non-zero."""
    print(f"\n{result.label} FAILED: {why}", file=sys.stderr)
    print(f"command: {' '.join(result.command)}", file=sys.stderr)
    print(f"exit code: {result.returncode}", file=sys.stderr)
    print("----- output -----", file=sys.stderr)
    print(result.output.rstrip(), file=sys.stderr)
    print("------------------", file=sys.stderr)
    sys.exit(1)


@dataclass(frozen=True)
class Summary:
    """Median, min and max of a list of wall times."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))


# ---------------------------------------------------------------------------------------------
# Helpers for benchmarks of long-running servers (api_vs_jupyrest.py).


def write_notebook(path: Path, cells: Sequence[dict[str, Any]]) -> Path:
    """Write one nbformat-4.5 notebook with a Python 3 kernelspec at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    return path


def ensure_venv(venv: Path, installs: Sequence[Sequence[str]], label: str) -> Path:
    """A virtual environment at ``venv`` with ``pip install`` run once per entry of ``installs``.

    Created (with this Python) only when missing or when an earlier creation did not finish;
    returns the environment's ``python``.
    """
    python = venv / "bin" / "python"
    marker = venv / ".nbplane-bench-ready"
    if python.exists() and marker.exists():
        return python
    print(
        f"Creating the {label} environment in {venv} (one-off, takes a minute)...", file=sys.stderr
    )
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)]]
    steps += [[*pip, *packages] for packages in installs]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{label} install step failed: {' '.join(step)}", file=sys.stderr)
            print(done.stdout + done.stderr, file=sys.stderr)
            sys.exit(1)
    marker.write_text("ok\n", encoding="utf-8")
    return python


def package_version(python: Path, distribution: str) -> str:
    """The installed version of a distribution in another environment, or ``?``."""
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "?"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, interpolated between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from ``/proc/PID/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may contain spaces
    return int(fields[1]), int(fields[19])


def process_tree(pid: int) -> dict[int, int]:
    """``{pid: start time}`` of a process and all its live descendants (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], starts[int(entry.name)] = stat
    if pid not in starts:
        return {}
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    tree: dict[int, int] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        tree[current] = starts[current]
        todo.extend(children.get(current, ()))
    return tree


@dataclass(frozen=True)
class ProcessMemory:
    """One process of a tree: its RSS and PSS (shared pages split between the processes that
    map them, so forked children are not counted twice) and a short command line."""

    pid: int
    rss_bytes: int
    pss_bytes: int
    command: str


@dataclass(frozen=True)
class TreeMemory:
    """Memory of a process tree: summed RSS, summed PSS, and each process's share."""

    processes: tuple[ProcessMemory, ...]

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes)

    @property
    def pss_bytes(self) -> int:
        return sum(p.pss_bytes for p in self.processes)

    @property
    def count(self) -> int:
        return len(self.processes)


def _kib_field(text: str, name: str) -> int:
    """Bytes of a ``Name:   N kB`` line of ``/proc/PID/status`` or ``smaps_rollup`` (0: absent)."""
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    return 0


def _short_command(pid: int, width: int = 90) -> str:
    """The command line of a process on one line, its program without the directory."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "?"
    words = [word for word in raw.split("\0") if word]
    if words:
        words[0] = Path(words[0]).name
    text = " ".join(" ".join(words).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def tree_memory(pid: int) -> TreeMemory:
    """RSS (``/proc/PID/status``) and PSS (``/proc/PID/smaps_rollup``) of a process and each of
    its live descendants; a process that ends while being read is left out."""
    members = []
    for member in sorted(process_tree(pid)):
        try:
            status = Path(f"/proc/{member}/status").read_text(encoding="utf-8")
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text(encoding="utf-8")
        except OSError:
            continue
        members.append(
            ProcessMemory(
                member,
                _kib_field(status, "VmRSS:"),
                _kib_field(rollup, "Pss:"),
                _short_command(member),
            )
        )
    return TreeMemory(tuple(members))


class Server:
    """A server process started in its own session, its output kept in a log file.

    ``stop()`` sends SIGTERM to the server, waits, then SIGKILLs whatever is left of the
    processes it started (found by pid and start time, so a reused pid is never hit).
    """

    def __init__(
        self,
        label: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.label = label
        self.command = list(command)
        self.log = log
        self._log_file = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            self.command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Call ``ready()`` every 0.1 s until it returns true; false on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                if ready():
                    return True
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 10.0) -> None:
        started = process_tree(self.pid) if self.alive() else {}
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            left = {p for p, start in started.items() if (s := _proc_stat(p)) and s[1] == start}
            if not left:
                break
            time.sleep(0.1)
        for member, start in started.items():
            stat = _proc_stat(member)
            if stat is not None and stat[1] == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
        self._log_file.close()


# ---------------------------------------------------------------------------------------------
# The loopback Kubernetes test cluster (tests/k8s/cluster.py) for the Kubernetes rows.


def kubernetes_unavailable(left_out: bool, module: str, what: str) -> str | None:
    """Why a Kubernetes row cannot run here, or None: left out (``--no-kubernetes``), ``module``
    (``what`` the row measures) not in this checkout, or the cluster's binaries missing."""
    if left_out:
        return "left out with --no-kubernetes"
    if importlib.util.find_spec(module) is None:
        return f"{what} is not in this checkout"
    sys.path.insert(0, str(REPO))  # tests/k8s/cluster.py: the loopback test cluster
    try:
        from tests.k8s.cluster import KubernetesUnavailable, binaries
    except ImportError as exc:
        return f"cannot import tests/k8s/cluster.py: {exc}"
    try:
        binaries()
    except KubernetesUnavailable as exc:
        return str(exc)
    return None


@contextmanager
def kubernetes_namespace(root: Path, console: Console) -> Iterator[tuple[Any, str]]:
    """The loopback cluster, started under ``root``, and a fresh namespace in it."""
    from kubernetes import client
    from tests.k8s.cluster import running_cluster

    console.print(
        "[dim]starting the loopback Kubernetes cluster (etcd, kube-apiserver, "
        "kube-controller-manager, node stand-in)[/dim]"
    )
    with running_cluster(root / "kube") as cluster:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        with cluster.api_client() as api:
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
            )
        yield cluster, namespace


@contextmanager
def warm_runner(env: Mapping[str, str]) -> Iterator[Callable[[], int]]:
    """A warm runner (``nbplane job warm start``) for the NBPLANE_HOME of ``env``, stopped at
    the end; yields a function giving how many runs it served, so a bench can check that its
    warm runs did not fall back to cold ones."""
    command = nbplane_command()
    subprocess.run([*command, "job", "warm", "start"], env=env, check=True, capture_output=True)

    def served() -> int:
        status = subprocess.run(
            [*command, "job", "warm", "status"], env=env, capture_output=True, text=True
        )
        found = status.stdout.rpartition("runs served: ")[2].strip()
        return int(found) if found.isdigit() else -1

    try:
        yield served
    finally:
        subprocess.run([*command, "job", "warm", "stop"], env=env, capture_output=True)
