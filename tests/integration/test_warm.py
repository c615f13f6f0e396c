"""The warm runner (``nbplane job warm``): a run through it behaves as a cold one (output,
records, exit codes, environment, working directory, Ctrl-C), and anything unusual falls back to
a cold run. Real processes: the runner, its forked children and the ``nbplane`` client."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nbplane import _warm
from tests.conftest import Env, write_notebook


@pytest.fixture
def short_home() -> Iterator[Path]:
    """An NBPLANE_HOME short enough for a Unix socket's path (107 bytes at most)."""
    home = Path(tempfile.mkdtemp(prefix="nbw-"))
    yield home
    shutil.rmtree(home)


@pytest.fixture
def warm(env: Env, short_home: Path) -> Iterator[Env]:
    """``env`` with a short NBPLANE_HOME and a warm runner started in it; stopped afterwards."""
    home = short_home
    warmed = replace(env, home=home, variables={**env.variables, "NBPLANE_HOME": str(home)})
    warmed.run("job", "warm", "start")
    yield warmed
    warmed.run("job", "warm", "stop")
    assert not (home / "warm.sock").exists()


sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For tests where the store does not matter (both backends are tested where it does)."""


def served(env: Env) -> int:
    answer = _warm.request(str(env.home / "warm.sock"), "status")
    assert answer is not None, "the runner is gone"
    count: int = answer["served"]
    return count


def record(job: Path, number: int) -> dict[str, Any]:
    """A run's record (read in this process: the test's store settings are in its environment)
    without what differs between two runs: ids, numbers, times."""
    from nbplane.jobs.history import get_run

    shown = get_run(job, number).model_dump(mode="json")
    for entry in (shown, *shown["steps"]):
        for varying in ("id", "run_id", "number", "started_at", "finished_at", "duration"):
            entry.pop(varying, None)
    return shown


def comparable(output: str) -> str:
    """A run's output without what differs between two runs: numbers of runs and durations."""
    output = re.sub(r"\d+\.\d+s", "<t>", output)
    return re.sub(r"run \d+|show-run (\S+) \d+", "run <n>", output)


def test_runs_like_a_cold_one(warm: Env, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    write_notebook(
        job / "10_load.ipynb",
        [
            "print('rows', 3)",
            "job_input.send_object_for_ingestion({'n': 1}, destination_table='counts')",
            "%%sql\nSELECT MAX(n) AS n FROM counts",
        ],
    )
    (job / "20_fail.py").write_text("def run(job_input):\n    raise ValueError('bad day')\n")
    cold = warm.run("job", "run", str(job), check=1, timeout=60)
    before = served(warm)
    hot = subprocess.run(
        [sys.executable, "-m", "nbplane", "job", "run", str(job)],
        env={**warm.variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served(warm) == before + 1  # it went through the runner
    assert hot.returncode == cold.returncode == 1
    assert comparable(hot.stdout) == comparable(cold.stdout)
    assert comparable(hot.stderr) == comparable(cold.stderr)
    assert "ValueError: bad day" in hot.stdout
    assert record(job, 1) == record(job, 2)
    assert record(job, 2)["status"] == "failed"
    assert warm.query("SELECT COUNT(*) FROM counts") == [(2,)]


@sqlite_only
def test_takes_the_clients_environment_and_directory(warm: Env, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "10_env.py").write_text(
        "import os\n\ndef run(job_input):\n"
        "    print('day', os.environ['REPORT_DAY'], os.getcwd() == os.environ['EXPECTED_CWD'])\n"
        "    print('batch', job_input.get_arguments(), os.environ['NBPLANE_INGEST_BATCH_SIZE'])\n"
    )
    before = served(warm)
    result = subprocess.run(
        [sys.executable, "-m", "nbplane", "job", "run", "job", "--arguments", '{"a": 1}'],
        env={
            **warm.variables,
            "REPORT_DAY": "2024-05-01",
            "EXPECTED_CWD": str(job),
            "NBPLANE_INGEST_BATCH_SIZE": "7",
        },
        cwd=tmp_path,  # the job as a relative directory
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "day 2024-05-01 True" in result.stdout
    assert "batch {'a': 1} 7" in result.stdout
    assert served(warm) == before + 1


@pytest.mark.parametrize("through_runner", [True, False], ids=["warm", "cold"])
def test_ctrl_c_cancels_the_run(
    env: Env, tmp_path: Path, short_home: Path, through_runner: bool
) -> None:
    if through_runner:
        env = replace(env, home=short_home)
        env.variables = {**env.variables, "NBPLANE_HOME": str(env.home)}
        env.run("job", "warm", "start")
    job = tmp_path / "job"
    job.mkdir()
    started = tmp_path / "started"
    (job / "10_wait.py").write_text(
        "import pathlib, time\n\ndef run(job_input):\n"
        f"    pathlib.Path({str(started)!r}).write_text('')\n    time.sleep(60)\n"
    )
    (job / "20_after.py").write_text("def run(job_input):\n    print('second step ran')\n")
    client = subprocess.Popen(
        [sys.executable, "-m", "nbplane", "job", "run", str(job)],
        env={**env.variables, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and client.poll() is None, client.communicate()
            time.sleep(0.02)
        client.send_signal(signal.SIGINT)
        try:
            stdout, _ = client.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            client.send_signal(signal.SIGABRT)  # the fault handler prints every thread's stack
            _, stacks = client.communicate(timeout=10)
            pytest.fail(f"the run went on 30 s after Ctrl-C; where it was:\n{stacks}")
    finally:
        client.kill()
        for pipe in (client.stdout, client.stderr):  # closed, or a ResourceWarning fails a
            if pipe is not None:  # later test of this worker
                pipe.close()
        if through_runner:
            env.run("job", "warm", "stop")
    assert client.returncode == 130, stdout
    cancelled = record(job, 1)
    assert cancelled["status"] == "cancelled" and "second step ran" not in stdout
    assert [step["status"] for step in cancelled["steps"]] == ["failed", "not run"]


@sqlite_only
def test_a_different_interpreter_path_runs_cold(warm: Env, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "10_hello.py").write_text("def run(job_input):\n    print('hello')\n")
    before = served(warm)
    path = os.pathsep.join(filter(None, [str(tmp_path), warm.variables.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "nbplane", "job", "run", str(job)],
        env={**warm.variables, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "hello" in result.stdout, result.stderr
    assert served(warm) == before  # refused: the run was cold, the runner still serves


@sqlite_only
def test_idle_runner_exits_and_removes_its_socket(env: Env, short_home: Path) -> None:
    home = short_home
    variables = {**env.variables, "NBPLANE_HOME": str(home), "NBPLANE_WARM_IDLE_SECONDS": "0.5"}
    idle = replace(env, home=home, variables=variables)
    idle.run("job", "warm", "start")
    assert stat.S_IMODE((home / "warm.sock").stat().st_mode) == 0o600
    assert "pid" in idle.run("job", "warm", "start").stdout  # a second start is harmless
    deadline = time.monotonic() + 20
    while (home / "warm.sock").exists():
        assert time.monotonic() < deadline, "the idle runner did not exit"
        time.sleep(0.05)
    assert idle.run("job", "warm", "status", check=1).stdout == "no warm runner\n"


def test_a_peer_of_another_user_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        assert _warm.peer_is_same_user(ours)
        monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)
        assert not _warm.peer_is_same_user(ours)


def test_a_runner_gone_before_the_run_started_means_a_cold_run(
    tmp_path: Path, short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket whose runner takes the request and closes (it died, or refused): the client
    says it did not run, and the command runs the job itself."""
    home = short_home
    monkeypatch.setenv("NBPLANE_HOME", str(home))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(home / "warm.sock"))
        listener.listen()
        closer = threading.Thread(target=lambda: listener.accept()[0].close())
        closer.start()
        assert _warm.warm_run(["job", "run", str(tmp_path)]) is None
        closer.join()


def test_a_runner_whose_code_changed_refuses_and_stops() -> None:
    from nbplane.jobs.warm import _Runner

    key = _warm.compatibility_key()
    stale = _Runner({**key, "source": [*key["source"][:2], 0]}, entry=lambda: None)
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        _warm.send_message(ours, {"kind": "run", "key": key}, [0, 1, 2])
        stale.answer(theirs)
        assert json.loads(ours.makefile("rb").readline()) == {
            "refused": "different interpreter, path or code"
        }
    assert stale.stopping and not stale.children
