"""The execution engines on real kernels: outputs, injection, failures, timeouts, cancel, reuse,
kernel pools and clean shutdown. Forked kernels (the default for python3) and stock kernels
started by jupyter_client both run the behaviours every engine must have."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from nbplane.apis.engines.base import OUTPUT_MIMETYPE, Engine, ExecutionOutcome, ExecutionRequest
from nbplane.apis.engines.isolated import IsolatedEngine
from nbplane.apis.engines.reuse import ReuseEngine
from nbplane.apis.parameters import parameters_source

T = TypeVar("T")

SAVE = (
    "import IPython.display\n"
    f"IPython.display.display({{{OUTPUT_MIMETYPE!r}: {{'y': 2 * x}}}}, raw=True)\n"
)
KINDS = [pytest.param(True, id="forked"), pytest.param(False, id="stock")]


def notebook(*cells: str | tuple[str, list[str]]) -> dict[str, Any]:
    """An nbformat-4.5 notebook of code cells; a cell is a source or (source, tags)."""
    built = []
    for number, cell in enumerate(cells):
        source, tags = (cell, []) if isinstance(cell, str) else cell
        built.append(
            {
                "cell_type": "code",
                "id": f"cell-{number}",
                "metadata": {"tags": tags},
                "execution_count": None,
                "outputs": [],
                "source": source.splitlines(True),
            }
        )
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "cells": built,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    }


DOUBLE = notebook(("x = 1", ["parameters"]), "print('x is', x)\n" + SAVE)


def request(
    nb: dict[str, Any],
    parameters: str = "x = 2",
    inject_after: int = 0,
    timeout: float = 20.0,
    key: str = "test@1",
    kernel_name: str = "python3",
) -> ExecutionRequest:
    return ExecutionRequest(
        key=key,
        notebook=nb,
        parameters_source=parameters,
        parameters_display=parameters,
        inject_after=inject_after,
        kernel_name=kernel_name,
        timeout=timeout,
    )


def with_engine(engine: Engine, body: Callable[[Engine], Awaitable[T]]) -> T:
    """Start ``engine`` (with a full pool: timeouts should not count kernel start-up), run
    ``body`` with it, always stop it."""

    async def main() -> T:
        await engine.start()
        try:
            if isinstance(engine, IsolatedEngine):
                await engine.wait_ready()
            return await body(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


def run_one(engine: Engine, req: ExecutionRequest) -> ExecutionOutcome:
    return with_engine(engine, lambda e: e.execute(req))


def pids_in(outcome: ExecutionOutcome) -> list[int]:
    return [int(word) for word in outcome.logs.split() if word.isdigit()]


def gone(pid: int, within: float = 5.0) -> bool:
    """Has process ``pid`` ended (zombies count as ended)?"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("forked", KINDS)
def test_completed_with_output_and_injected_parameters(forked: bool) -> None:
    original = repr(DOUBLE)
    outcome = run_one(IsolatedEngine(pool_size=1, forked=forked), request(DOUBLE))

    assert outcome.status == "completed", outcome.error
    assert outcome.error is None
    assert outcome.has_output and outcome.output == {"y": 4}
    assert outcome.logs == "x is 2\n"
    cells = outcome.notebook["cells"]
    assert [c["metadata"]["tags"] for c in cells] == [["parameters"], ["injected-parameters"], []]
    assert cells[1]["source"] == "x = 2" and cells[1]["id"] == "injected-parameters"
    assert [c["execution_count"] for c in cells] == [1, 2, 3]
    assert cells[2]["outputs"][0] == {"output_type": "stream", "name": "stdout", "text": "x is 2\n"}
    assert cells[2]["outputs"][1]["data"][OUTPUT_MIMETYPE] == {"y": 4}
    assert outcome.notebook["metadata"]["language_info"]["name"] == "python"
    assert outcome.notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert repr(DOUBLE) == original  # the request's notebook is not modified


def test_parameters_cell_goes_after_inject_after() -> None:
    nb = notebook("print('a')", ("x = 1", ["parameters"]), "print('c', x)\n" + SAVE)

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, "x = 5", inject_after=position))
            for position in (-1, 1)
        ]

    first, after = with_engine(IsolatedEngine(pool_size=2), body)
    # before the first cell: the parameters cell's defaults win
    assert first.notebook["cells"][0]["source"] == "x = 5"
    assert first.notebook["cells"][0]["metadata"]["tags"] == ["injected-parameters"]
    assert first.output == {"y": 2} and first.logs == "a\nc 1\n"
    # after the parameters cell: the request's value wins
    assert after.notebook["cells"][2]["metadata"]["tags"] == ["injected-parameters"]
    assert after.output == {"y": 10} and after.logs == "a\nc 5\n"
    assert len(after.notebook["cells"]) == 4


@pytest.mark.parametrize("forked", KINDS)
def test_exception_names_the_cell_and_stops_there(forked: bool) -> None:
    nb = notebook(
        ("x = 1", ["parameters"]), "y = 2", "raise ValueError(f'bad x {x}')", "print('never')"
    )
    outcome = run_one(IsolatedEngine(pool_size=1, forked=forked), request(nb))

    assert outcome.status == "failed"
    error = outcome.error
    assert error is not None
    assert error["reason"] == "exception" and error["cell"] == 3
    assert error["ename"] == "ValueError" and error["evalue"] == "bad x 2"
    assert any("bad x" in line for line in error["traceback"])
    cells = outcome.notebook["cells"]
    assert cells[3]["outputs"][0]["output_type"] == "error"
    assert cells[4]["execution_count"] is None and cells[4]["outputs"] == []
    assert "never" not in outcome.logs


@pytest.mark.parametrize("forked", KINDS)
def test_kernel_death_is_reported_quickly(forked: bool) -> None:
    exits = notebook(
        ("x = 1", ["parameters"]),
        "print('bye', flush=True)",
        "import os\nos._exit(3)",
        "print('never')",
    )
    crashes = notebook(("x = 1", ["parameters"]), "import ctypes\nctypes.string_at(0)")

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(exits)), await engine.execute(request(crashes))]

    exited, crashed = with_engine(IsolatedEngine(pool_size=2, forked=forked), body)
    for outcome, cell in ((exited, 3), (crashed, 2)):
        assert outcome.status == "failed"
        assert outcome.error is not None
        assert outcome.error["reason"] == "kernel_died" and outcome.error["cell"] == cell
        assert outcome.duration < 30  # noticed, not left to a timeout
    assert exited.error is not None and exited.error["exit_code"] == 3
    assert crashed.error is not None and "SIGSEGV" in crashed.error["message"]
    assert "bye" in exited.logs


@pytest.mark.parametrize("forked", KINDS)
def test_timeout_interrupts_then_kills_the_kernel(forked: bool) -> None:
    nb = notebook(
        ("x = 1", ["parameters"]),
        "import os\nprint(os.getpid(), flush=True)",
        "import time\ntime.sleep(60)",
        "print('never')",
    )
    outcome = run_one(IsolatedEngine(pool_size=1, forked=forked), request(nb, timeout=1.0))

    assert outcome.status == "timed_out"
    assert outcome.error is not None
    assert outcome.error["reason"] == "timeout" and outcome.error["cell"] == 3
    assert outcome.error.get("ename") == "KeyboardInterrupt"  # the interrupt reached the cell
    assert 1.0 <= outcome.duration < 30  # the 60 s cell was stopped
    [pid] = pids_in(outcome)
    assert gone(pid)


def test_cancel_stops_a_running_execution() -> None:
    nb = notebook(("x = 1", ["parameters"]), "import time\ntime.sleep(60)")

    async def body(engine: Engine) -> tuple[ExecutionOutcome, ExecutionOutcome]:
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, cancel.set)
        running = await engine.execute(request(nb), cancel)
        already = asyncio.Event()
        already.set()
        return running, await engine.execute(request(nb), already)

    running, before_start = with_engine(IsolatedEngine(pool_size=1), body)
    assert running.status == "cancelled"
    assert running.error is not None
    assert running.error["reason"] == "cancelled" and running.error["cell"] == 2
    assert 0.5 <= running.duration < 30  # the 60 s cell was stopped
    assert before_start.status == "cancelled"


def test_each_isolated_execution_gets_a_fresh_kernel() -> None:
    nb = notebook(
        ("x = 1", ["parameters"]),
        "import os, random\nprint(os.getpid(), 'leak' in globals())\nleak = 1\n"
        "print('random', random.random())",
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(nb)) for _ in range(3)]

    outcomes = with_engine(IsolatedEngine(pool_size=2), body)
    assert all(o.status == "completed" for o in outcomes)
    pids = [pids_in(o)[0] for o in outcomes]
    assert len(set(pids)) == 3
    assert all("False" in o.logs for o in outcomes)  # nothing left by the previous execution
    randoms = {o.logs.split("random")[1] for o in outcomes}
    assert len(randoms) == 3  # forked kernels are reseeded
    assert all(gone(pid) for pid in pids)


def test_a_killed_fork_server_is_replaced() -> None:
    me = psutil.Process()

    def fork_servers() -> list[psutil.Process]:
        return [p for p in me.children() if "nbplane.apis.engines._forkserver" in p.cmdline()]

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        [server] = fork_servers()
        server.kill()  # and with it (PR_SET_PDEATHSIG) every pooled kernel
        await asyncio.sleep(0.1)  # the engine hears of it at once
        outcomes = [await engine.execute(request(DOUBLE)) for _ in range(2)]
        assert [p.pid for p in fork_servers()] != [server.pid]
        return outcomes

    outcomes = with_engine(IsolatedEngine(pool_size=2), body)
    assert [o.status for o in outcomes] == ["completed", "completed"], outcomes[0].error
    assert all(o.output == {"y": 4} for o in outcomes)


@pytest.mark.parametrize(
    "engine",
    [IsolatedEngine(pool_size=1, kernel_names=()), ReuseEngine()],
    ids=["isolated", "reuse"],
)
def test_unknown_kernel_fails_to_start_without_raising(engine: Engine) -> None:
    outcome = run_one(engine, request(DOUBLE, kernel_name="no-such-kernel"))
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["reason"] == "kernel_failed_to_start"
    assert "no-such-kernel" in outcome.error["message"]


def test_stop_leaves_no_kernel_process_behind() -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    seen: set[int] = set()

    async def body(engine: Engine) -> ExecutionOutcome:
        running = asyncio.ensure_future(
            engine.execute(
                request(notebook(("x = 1", ["parameters"]), "import time\ntime.sleep(60)"))
            )
        )
        await asyncio.sleep(0.3)
        seen.update(p.pid for p in me.children(recursive=True))
        await engine.stop()  # while an execution runs: it ends, it does not hang or raise
        return await running

    interrupted = with_engine(IsolatedEngine(pool_size=3), body)
    assert interrupted.status == "failed"
    assert interrupted.error is not None and interrupted.error["reason"] == "kernel_died"
    started = seen - before
    assert len(started) >= 5  # the fork server, three pooled kernels, the running one
    assert all(gone(pid) for pid in started)


def test_reuse_runs_setup_once_and_only_request_cells_after(tmp_path: Path) -> None:
    counter = tmp_path / "setup-runs"
    nb = notebook(
        f"import os\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')\n"
        "total = 0\nprint('setup', os.getpid())",
        ("x = 1", ["parameters"]),
        "total += x\nprint(os.getpid(), 'total', total)\n" + SAVE,
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(nb, f"x = {n}", inject_after=1)) for n in (1, 2, 3)]

    outcomes = with_engine(ReuseEngine(), body)
    assert [o.status for o in outcomes] == ["completed"] * 3
    assert [o.output for o in outcomes] == [{"y": 2}, {"y": 4}, {"y": 6}]
    assert counter.read_text() == "x"  # the setup cell ran once
    # each request starts from the setup's namespace: `total += x` does not add up
    assert [o.logs.split("total ")[-1] for o in outcomes] == ["1\n", "2\n", "3\n"]
    assert len({pids_in(o)[0] for o in outcomes}) == 1
    for outcome in outcomes:  # the executed notebook shows the setup cells as they ran
        cells = outcome.notebook["cells"]
        assert cells[0]["outputs"][0]["text"].startswith("setup")
        assert cells[2]["metadata"]["tags"] == ["injected-parameters"]


def test_reuse_request_cells_keep_their_own_outputs_and_errors() -> None:
    """The request cells of a reuse execution travel as one kernel request (when possible):
    outputs and errors must still land in the cell that made them."""
    nb = notebook(
        "import asyncio, sys",
        ("x = 1", ["parameters"]),
        "print('one', x)\nsys.stderr.write('err\\n');",
        "print('two')\nif x == 0:\n    raise KeyError('zero')\nx",
        "print('three')\n" + SAVE,
    )
    awaits = notebook(
        ("x = 1", ["parameters"]), "await asyncio.sleep(0)\nprint('awaited')\nx;", SAVE
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, "x = 5", inject_after=1)),
            await engine.execute(request(nb, "x = 0", inject_after=1)),
            await engine.execute(request(nb, "x = no_such_name", inject_after=1)),
            await engine.execute(request(awaits, "import asyncio\nx = 3", key="awaits")),
        ]

    ok, failed, bad_parameters, awaited = with_engine(ReuseEngine(), body)
    assert ok.status == "completed" and ok.output == {"y": 10}
    cells = ok.notebook["cells"]
    assert cells[2]["outputs"] == []  # the injected parameters
    assert [o.get("text") for o in cells[3]["outputs"]] == ["one 5\n", "err\n"]  # ';' silences
    assert cells[4]["outputs"][0]["text"] == "two\n"
    assert cells[4]["outputs"][1]["data"]["text/plain"] == "5"
    assert cells[5]["outputs"][0]["text"] == "three\n"
    assert ok.logs == "one 5\nerr\ntwo\nthree\n"

    assert failed.status == "failed" and failed.error is not None
    assert failed.error["cell"] == 4 and failed.error["ename"] == "KeyError"
    cells = failed.notebook["cells"]
    assert [o["output_type"] for o in cells[4]["outputs"]] == ["stream", "error"]
    assert cells[5]["outputs"] == [] and "three" not in failed.logs

    assert bad_parameters.error is not None and bad_parameters.error["cell"] == 2
    assert bad_parameters.error["ename"] == "NameError"
    cells = bad_parameters.notebook["cells"]
    assert [o["output_type"] for o in cells[2]["outputs"]] == ["error"]
    assert cells[3]["outputs"] == [] and bad_parameters.logs == ""

    assert awaited.status == "completed", awaited.error  # sent one cell at a time instead
    assert awaited.output == {"y": 6} and awaited.logs == "awaited\n"
    assert [o["output_type"] for o in awaited.notebook["cells"][2]["outputs"]] == ["stream"]


@pytest.mark.parametrize("one_by_one", [False, True], ids=["together", "one-by-one"])
def test_reuse_requests_leave_nothing_to_the_next_caller(one_by_one: bool) -> None:
    """On one warm kernel: A's parameter, the names A's cells bind (shadowing `len`, `str`),
    what A put into `builtins` and A's displayed value (`_`, `Out`) are gone for B; B shadows
    `len` and `str` by its parameters and raises, and C finds none of it and runs. Request
    cells go as one kernel request, or (a cell that mentions async) one request each."""
    names = ("alice_api_key", "defined_by_cell", "leaked", "len", "str")
    nb = notebook(
        "import builtins, os, IPython.display",
        ("mode = ''", ["parameters"]),
        f"leaked = sorted(name for name in {names!r} if name in globals())\n"
        "seen = any(v == 's3cret' for v in [*globals().values(), *Out.values(),\n"
        "                                    *vars(builtins).values()])\n"
        f"IPython.display.display({{{OUTPUT_MIMETYPE!r}: "
        "{'leaked': leaked, 'seen': seen, 'pid': os.getpid()}}, raw=True)\nleaked",
        "print(len('ab'), str(1), max(1, 2))" + ("  # not async" if one_by_one else ""),
        "if mode == 'shadow':\n    defined_by_cell = alice_api_key\n    len = 0\n"
        "    str = None\n    builtins.smuggled = alice_api_key\n"
        "alice_api_key if mode == 'shadow' else 0",
    )
    callers: list[dict[str, Any]] = [
        {"alice_api_key": "s3cret", "mode": "shadow"},
        {"len": 0, "str": None},
        {},
    ]

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, parameters_source(parameters, {}), inject_after=1))
            for parameters in callers
        ]

    a, b, c = with_engine(ReuseEngine(), body)
    assert a.status == "completed", a.error
    assert a.output == {"leaked": ["alice_api_key"], "seen": True, "pid": a.output["pid"]}
    assert a.logs == "2 1 2\n"
    assert b.output["leaked"] == ["len", "str"], "only B's own parameters"
    assert b.output["seen"] is False, "A's value is in no name, cache or Out of the kernel"
    assert b.status == "failed" and b.error is not None and b.error["ename"] == "TypeError"
    assert c.status == "completed", c.error
    assert c.output["leaked"] == [] and c.output["seen"] is False and c.logs == "2 1 2\n"
    assert len({o.output["pid"] for o in (a, b, c)}) == 1, "the same warm kernel served all"


def test_reuse_rebuilds_the_warm_kernel_after_death_or_timeout(tmp_path: Path) -> None:
    counter = tmp_path / "setup-runs"
    nb = notebook(
        f"import os, time\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')",
        ("x = 1\nhow = ''", ["parameters"]),
        "if how == 'die': os._exit(1)\nif how == 'hang': time.sleep(60)\n"
        "print(os.getpid())\n" + SAVE,
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, parameters, inject_after=1, timeout=timeout))
            for parameters, timeout in (
                ("x = 1", 20),
                ("how = 'die'", 20),
                ("x = 2", 20),
                ("how = 'hang'", 1),
                ("x = 3", 20),
            )
        ]

    ok1, died, ok2, hung, ok3 = with_engine(ReuseEngine(), body)
    assert died.status == "failed" and died.error is not None
    assert died.error["reason"] == "kernel_died" and died.error["cell"] == 3
    assert hung.status == "timed_out"
    assert [o.status for o in (ok1, ok2, ok3)] == ["completed"] * 3
    assert ok3.output == {"y": 6}
    assert counter.read_text() == "xxx"  # built, rebuilt after the death, after the timeout
    assert len({pids_in(o)[0] for o in (ok1, ok2, ok3)}) == 3


def test_reuse_setup_outlives_a_request_that_timed_out(tmp_path: Path) -> None:
    counter = tmp_path / "setup-runs"
    nb = notebook(
        f"import time\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')\ntime.sleep(1.5)",
        ("x = 1", ["parameters"]),
        SAVE,
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        hurried = await engine.execute(request(nb, inject_after=1, timeout=0.5))
        patient = await engine.execute(request(nb, "x = 3", inject_after=1, timeout=10))
        return [hurried, patient]

    hurried, patient = with_engine(ReuseEngine(), body)
    assert hurried.status == "timed_out"
    assert patient.status == "completed" and patient.output == {"y": 6}
    assert counter.read_text() == "x"  # it waited for the same warm-up, not a second one


def test_reuse_setup_failure_is_reported_and_retried(tmp_path: Path) -> None:
    flag = tmp_path / "fail-once"
    flag.write_text("")
    nb = notebook(
        f"import os\nif os.path.exists({str(flag)!r}):\n"
        f"    os.remove({str(flag)!r})\n    raise RuntimeError('setup failed')",
        ("x = 1", ["parameters"]),
        SAVE,
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(nb, inject_after=1)) for _ in range(2)]

    failed, retried = with_engine(ReuseEngine(), body)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["reason"] == "exception" and failed.error["cell"] == 0
    assert failed.error["evalue"] == "setup failed"
    assert retried.status == "completed" and retried.output == {"y": 4}


@pytest.mark.parametrize("forked", KINDS)
def test_api_kernels_get_none_of_the_servers_settings(
    forked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook API's kernel does not inherit the server's key, database URL or token."""
    monkeypatch.setenv("NBPLANE_SECRET_KEY", "server-key-not-for-notebooks")
    monkeypatch.setenv("NBPLANE_STORE_URL", "postgresql://nbplane:pw@db/nbplane")
    leaky = notebook(
        ("x = 1", ["parameters"]),
        "import os\nprint(sorted(k for k in os.environ if k.startswith('NBPLANE')))",
    )
    outcome = run_one(IsolatedEngine(pool_size=1, forked=forked), request(leaky))
    assert outcome.status == "completed", outcome.error
    assert outcome.logs == "[]\n"
