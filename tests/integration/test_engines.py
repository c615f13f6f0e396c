"""The execution engines on real shells and kernels: outputs, injection, failures, timeouts,
cancel, reuse, pools and clean shutdown. The behaviours every engine must have run on all four
engines (IPython shells: isolated, reuse; Jupyter kernels: kernel-isolated, kernel-reuse), and
some on stock kernels started by jupyter_client too."""

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
from nbplane.apis.engines.shell import ShellIsolatedEngine, ShellReuseEngine
from nbplane.apis.parameters import parameters_source
from nbplane.jobs.capture import plain_text

T = TypeVar("T")

SAVE = (
    "import IPython.display\n"
    f"IPython.display.display({{{OUTPUT_MIMETYPE!r}: {{'y': 2 * x}}}}, raw=True)\n"
)
Factory = Callable[[], Engine]
ISOLATED: list[Any] = [
    pytest.param(lambda: ShellIsolatedEngine(1, 2), id="isolated"),
    pytest.param(lambda: IsolatedEngine(pool_size=2), id="kernel-isolated"),
]
REUSE: list[Any] = [
    pytest.param(ShellReuseEngine, id="reuse"),
    pytest.param(ReuseEngine, id="kernel-reuse"),
]
ENGINES = ISOLATED + REUSE
"""Every engine, as a factory of a new one."""
STOCK = pytest.param(lambda: IsolatedEngine(pool_size=2, forked=False), id="kernel-stock")
WITH_STOCK = [*ENGINES, STOCK]


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
            if isinstance(engine, (IsolatedEngine, ShellIsolatedEngine)):
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


@pytest.mark.parametrize("make", WITH_STOCK)
def test_completed_with_output_and_injected_parameters(make: Factory) -> None:
    original = repr(DOUBLE)
    engine = make()
    outcome = run_one(engine, request(DOUBLE))

    assert outcome.status == "completed", outcome.error
    assert outcome.error is None
    assert outcome.has_output and outcome.output == {"y": 4}
    assert outcome.logs == "x is 2\n"
    cells = outcome.notebook["cells"]
    assert [c["metadata"]["tags"] for c in cells] == [["parameters"], ["injected-parameters"], []]
    assert cells[1]["source"] == "x = 2" and cells[1]["id"] == "injected-parameters"
    counts = [c["execution_count"] for c in cells]
    # the kernel reuse engine sends its request cells as one kernel request, uncounted
    assert counts == ([1, None, None] if engine.name == "kernel-reuse" else [1, 2, 3])
    assert cells[2]["outputs"][0] == {"output_type": "stream", "name": "stdout", "text": "x is 2\n"}
    assert cells[2]["outputs"][1]["data"][OUTPUT_MIMETYPE] == {"y": 4}
    assert outcome.notebook["metadata"]["language_info"]["name"] == "python"
    assert outcome.notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert outcome.notebook["metadata"]["nbplane"] == {"engine": engine.name}
    assert set(outcome.timings) >= {"engine_start", "cells", "other"}
    assert repr(DOUBLE) == original  # the request's notebook is not modified


@pytest.mark.parametrize("make", ENGINES)
def test_parameters_cell_goes_after_inject_after(make: Factory) -> None:
    nb = notebook("print('a')", ("x = 1", ["parameters"]), "print('c', x)\n" + SAVE)

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, "x = 5", inject_after=position))
            for position in (-1, 1)
        ]

    first, after = with_engine(make(), body)
    # before the first cell: the parameters cell's defaults win
    assert first.notebook["cells"][0]["source"] == "x = 5"
    assert first.notebook["cells"][0]["metadata"]["tags"] == ["injected-parameters"]
    assert first.output == {"y": 2} and first.logs == "a\nc 1\n"
    # after the parameters cell: the request's value wins
    assert after.notebook["cells"][2]["metadata"]["tags"] == ["injected-parameters"]
    assert after.output == {"y": 10} and after.logs == "a\nc 5\n"
    assert len(after.notebook["cells"]) == 4


@pytest.mark.parametrize("make", WITH_STOCK)
def test_exception_names_the_cell_and_stops_there(make: Factory) -> None:
    nb = notebook(
        ("x = 1", ["parameters"]), "y = 2", "raise ValueError(f'bad x {x}')", "print('never')"
    )
    outcome = run_one(make(), request(nb))

    assert outcome.status == "failed"
    error = outcome.error
    assert error is not None
    assert error["reason"] == "exception" and error["cell"] == 3
    assert error["ename"] == "ValueError" and error["evalue"] == "bad x 2"
    assert any("bad x" in line for line in error["traceback"])
    # at the user's cell and line, and nothing of nbplane's own code
    traceback = [plain_text(line) for line in error["traceback"]]
    assert "line 1" in traceback[-2] and "raise ValueError" in traceback[-2]
    assert not any("nbplane" in line for line in traceback)
    cells = outcome.notebook["cells"]
    assert cells[3]["outputs"][0]["output_type"] == "error"
    assert cells[4]["execution_count"] is None and cells[4]["outputs"] == []
    assert "never" not in outcome.logs


@pytest.mark.parametrize("make", WITH_STOCK)
def test_kernel_death_is_reported_quickly(make: Factory) -> None:
    exits = notebook(
        ("x = 1", ["parameters"]),
        "print('bye', flush=True)",
        "import os\nos._exit(3)",
        "print('never')",
    )
    crashes = notebook(("x = 1", ["parameters"]), "import ctypes\nctypes.string_at(0)")

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(exits)), await engine.execute(request(crashes))]

    exited, crashed = with_engine(make(), body)
    for outcome, cell in ((exited, 3), (crashed, 2)):
        assert outcome.status == "failed"
        assert outcome.error is not None
        assert outcome.error["reason"] == "kernel_died" and outcome.error["cell"] == cell
        assert outcome.duration < 30  # noticed, not left to a timeout
    assert exited.error is not None and exited.error["exit_code"] == 3
    assert crashed.error is not None and "SIGSEGV" in crashed.error["message"]
    assert "bye" in exited.logs


@pytest.mark.parametrize("make", WITH_STOCK)
def test_timeout_interrupts_then_kills_the_kernel(make: Factory) -> None:
    nb = notebook(
        ("x = 1", ["parameters"]),
        "import os\nprint(os.getpid(), flush=True)",
        "import time\ntime.sleep(60 * x)",
        "print('never')",
    )

    async def body(engine: Engine) -> ExecutionOutcome:
        await engine.execute(request(nb, "x = 0"))  # a reuse engine's shell or kernel is warm
        return await engine.execute(request(nb, timeout=1.0))

    outcome = with_engine(make(), body)

    assert outcome.status == "timed_out"
    assert outcome.error is not None
    assert outcome.error["reason"] == "timeout" and outcome.error["cell"] == 3
    assert outcome.error.get("ename") == "KeyboardInterrupt"  # the interrupt reached the cell
    assert 1.0 <= outcome.duration < 30  # the 60 s cell was stopped
    [pid] = pids_in(outcome)
    assert gone(pid)


@pytest.mark.parametrize("make", ENGINES)
def test_cancel_stops_a_running_execution(make: Factory) -> None:
    nb = notebook(("x = 1", ["parameters"]), "import time\ntime.sleep(x)")

    async def body(engine: Engine) -> tuple[ExecutionOutcome, ExecutionOutcome]:
        await engine.execute(request(nb, "x = 0"))  # a reuse engine's shell or kernel is warm
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, cancel.set)
        running = await engine.execute(request(nb, "x = 60"), cancel)
        already = asyncio.Event()
        already.set()
        return running, await engine.execute(request(nb), already)

    running, before_start = with_engine(make(), body)
    assert running.status == "cancelled"
    assert running.error is not None
    assert running.error["reason"] == "cancelled" and running.error["cell"] == 2
    assert 0.5 <= running.duration < 30  # the 60 s cell was stopped
    assert before_start.status == "cancelled"


@pytest.mark.parametrize("make", ISOLATED)
def test_each_isolated_execution_gets_a_fresh_kernel(make: Factory) -> None:
    nb = notebook(
        ("x = 1", ["parameters"]),
        "import os, random\nprint(os.getpid(), 'leak' in globals())\nleak = 1\n"
        "print('random', random.random())",
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(nb)) for _ in range(3)]

    outcomes = with_engine(make(), body)
    assert all(o.status == "completed" for o in outcomes)
    pids = [pids_in(o)[0] for o in outcomes]
    assert len(set(pids)) == 3
    assert all("False" in o.logs for o in outcomes)  # nothing left by the previous execution
    randoms = {o.logs.split("random")[1] for o in outcomes}
    assert len(randoms) == 3  # forked kernels are reseeded
    assert all(gone(pid) for pid in pids)


@pytest.mark.parametrize("make", ISOLATED)
def test_a_killed_fork_server_is_replaced(make: Factory) -> None:
    """The template that shells or kernels are forked from."""
    me = psutil.Process()

    def fork_servers() -> list[psutil.Process]:
        return [p for p in me.children() if "nbplane.apis.engines._forkserver" in p.cmdline()]

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        servers = fork_servers()
        assert len(servers) == 1, [(p.pid, p.cmdline()) for p in servers]
        [server] = servers
        server.kill()  # and with it (PR_SET_PDEATHSIG) every pooled kernel
        await asyncio.sleep(0.1)  # the engine hears of it at once
        outcomes = [await engine.execute(request(DOUBLE)) for _ in range(2)]
        assert [p.pid for p in fork_servers()] != [server.pid]
        return outcomes

    outcomes = with_engine(make(), body)
    assert [o.status for o in outcomes] == ["completed", "completed"], outcomes[0].error
    assert all(o.output == {"y": 4} for o in outcomes)


@pytest.mark.parametrize("make", ENGINES)
def test_unknown_kernel_fails_to_start_without_raising(make: Factory) -> None:
    outcome = run_one(make(), request(DOUBLE, kernel_name="no-such-kernel"))
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error["reason"] == "kernel_failed_to_start"
    assert "no-such-kernel" in outcome.error["message"]


@pytest.mark.parametrize("make", ENGINES)
def test_stop_leaves_no_kernel_process_behind(make: Factory) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    seen: set[int] = set()

    nb = notebook(("x = 1", ["parameters"]), "import time\ntime.sleep(x)")

    async def body(engine: Engine) -> ExecutionOutcome:
        await engine.execute(request(nb, "x = 0"))  # a reuse engine's shell or kernel is warm
        running = asyncio.ensure_future(engine.execute(request(nb, "x = 60")))
        await asyncio.sleep(0.3)
        seen.update(p.pid for p in me.children(recursive=True))
        await engine.stop()  # while an execution runs: it ends, it does not hang or raise
        return await running

    interrupted = with_engine(make(), body)
    assert interrupted.status == "failed"
    assert interrupted.error is not None and interrupted.error["reason"] == "kernel_died"
    started = seen - before
    assert len(started) >= 2  # the fork server, the running kernel or shell (and pooled ones)
    assert all(gone(pid) for pid in started)


@pytest.mark.parametrize("make", REUSE)
def test_reuse_runs_setup_once_and_only_request_cells_after(make: Factory, tmp_path: Path) -> None:
    counter = tmp_path / "setup-runs"
    nb = notebook(
        f"import os\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')\n"
        "total = 0\nprint('setup', os.getpid())",
        ("x = 1", ["parameters"]),
        "total += x\nprint(os.getpid(), 'total', total)\n" + SAVE,
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [await engine.execute(request(nb, f"x = {n}", inject_after=1)) for n in (1, 2, 3)]

    outcomes = with_engine(make(), body)
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


@pytest.mark.parametrize("make", REUSE)
def test_reuse_request_cells_keep_their_own_outputs_and_errors(make: Factory) -> None:
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

    ok, failed, bad_parameters, awaited = with_engine(make(), body)
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


@pytest.mark.parametrize(
    ("make", "one_by_one"),
    [
        pytest.param(ShellReuseEngine, False, id="reuse"),
        pytest.param(ReuseEngine, False, id="kernel-reuse-together"),
        pytest.param(ReuseEngine, True, id="kernel-reuse-one-by-one"),
    ],
)
def test_reuse_requests_leave_nothing_to_the_next_caller(make: Factory, one_by_one: bool) -> None:
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

    a, b, c = with_engine(make(), body)
    assert a.status == "completed", a.error
    assert a.output == {"leaked": ["alice_api_key"], "seen": True, "pid": a.output["pid"]}
    assert a.logs == "2 1 2\n"
    assert b.output["leaked"] == ["len", "str"], "only B's own parameters"
    assert b.output["seen"] is False, "A's value is in no name, cache or Out of the kernel"
    assert b.status == "failed" and b.error is not None and b.error["ename"] == "TypeError"
    assert c.status == "completed", c.error
    assert c.output["leaked"] == [] and c.output["seen"] is False and c.logs == "2 1 2\n"
    assert len({o.output["pid"] for o in (a, b, c)}) == 1, "the same warm kernel served all"


@pytest.mark.parametrize("make", REUSE)
def test_reuse_rebuilds_the_warm_kernel_after_death_or_timeout(
    make: Factory, tmp_path: Path
) -> None:
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

    ok1, died, ok2, hung, ok3 = with_engine(make(), body)
    assert died.status == "failed" and died.error is not None
    assert died.error["reason"] == "kernel_died" and died.error["cell"] == 3
    assert hung.status == "timed_out"
    assert [o.status for o in (ok1, ok2, ok3)] == ["completed"] * 3
    assert ok3.output == {"y": 6}
    assert counter.read_text() == "xxx"  # built, rebuilt after the death, after the timeout
    assert len({pids_in(o)[0] for o in (ok1, ok2, ok3)}) == 3


@pytest.mark.parametrize("make", REUSE)
def test_reuse_setup_outlives_a_request_that_timed_out(make: Factory, tmp_path: Path) -> None:
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

    hurried, patient = with_engine(make(), body)
    assert hurried.status == "timed_out"
    assert patient.status == "completed" and patient.output == {"y": 6}
    assert counter.read_text() == "x"  # it waited for the same warm-up, not a second one


@pytest.mark.parametrize("make", REUSE)
def test_reuse_setup_failure_is_reported_and_retried(make: Factory, tmp_path: Path) -> None:
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

    failed, retried = with_engine(make(), body)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["reason"] == "exception" and failed.error["cell"] == 0
    assert failed.error["evalue"] == "setup failed"
    assert retried.status == "completed" and retried.output == {"y": 4}


@pytest.mark.parametrize("make", [*ISOLATED, STOCK])
def test_api_kernels_get_none_of_the_servers_settings(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook API's kernel does not inherit the server's key, database URL or token."""
    monkeypatch.setenv("NBPLANE_SECRET_KEY", "server-key-not-for-notebooks")
    monkeypatch.setenv("NBPLANE_STORE_URL", "postgresql://nbplane:pw@db/nbplane")
    leaky = notebook(
        ("x = 1", ["parameters"]),
        "import os\nprint(sorted(k for k in os.environ if k.startswith('NBPLANE')))",
    )
    outcome = run_one(make(), request(leaky))
    assert outcome.status == "completed", outcome.error
    assert outcome.logs == "[]\n"


@pytest.mark.parametrize("make", ENGINES)
def test_ipython_semantics_magics_shell_commands_await_and_displays(make: Factory) -> None:
    """What a kernel's IPython gives a cell, every engine gives: a magic, ``!cmd``, top-level
    ``await``, display updates, ``clear_output`` and a counted result."""
    nb = notebook(
        ("x = 1", ["parameters"]),
        "import asyncio\nawait asyncio.sleep(0)\n!echo shell-$x\n%time y = 3",
        "from IPython.display import display, clear_output\n"
        "handle = display('first', display_id=True)\nhandle.update('updated')",
        "print('gone')\nclear_output(wait=True)\ny * x",
    )
    outcome = run_one(make(), request(nb))

    assert outcome.status == "completed", outcome.error
    cells = outcome.notebook["cells"]
    assert cells[2]["outputs"][0]["text"].startswith("shell-2\r\nCPU times")
    assert [o["data"]["text/plain"] for o in cells[3]["outputs"]] == ["'updated'"]
    [result] = cells[4]["outputs"]
    assert result["output_type"] == "execute_result" and result["data"]["text/plain"] == "6"
    assert result["execution_count"] == cells[4]["execution_count"]
    assert outcome.logs.startswith("shell-2") and "gone" in outcome.logs


def test_reuse_grows_per_key_under_load_and_shrinks_when_idle() -> None:
    """Two warm shells at most for a key busy with three requests at once; back to one when
    idle (tiny limits)."""
    nb = notebook(
        "import os, time",
        ("x = 1", ["parameters"]),
        "time.sleep(0.5)\nprint(os.getpid())",
    )

    async def body(engine: Engine) -> tuple[list[ExecutionOutcome], int]:
        assert isinstance(engine, ShellReuseEngine)
        outcomes = await asyncio.gather(
            *(engine.execute(request(nb, inject_after=1)) for _ in range(3))
        )
        for _ in range(100):  # idle: the extra shell ends after 0.2 s
            if engine.warm_count("test@1") == 1:
                break
            await asyncio.sleep(0.05)
        size = engine.warm_count("test@1")
        outcomes.append(await engine.execute(request(nb, inject_after=1)))
        return outcomes, size

    outcomes, size = with_engine(ShellReuseEngine(1, 2, idle_seconds=0.2), body)
    assert [o.status for o in outcomes] == ["completed"] * 4, outcomes[0].error
    assert len({pids_in(o)[0] for o in outcomes[:3]}) == 2  # the third waited for one of two
    assert size == 1
    assert pids_in(outcomes[3])[0] in {pids_in(o)[0] for o in outcomes[:3]}


def test_isolated_pool_grows_under_load_and_shrinks_when_idle() -> None:
    nb = notebook(("x = 1", ["parameters"]), "import time\ntime.sleep(0.3)")

    async def body(engine: Engine) -> list[int]:
        assert isinstance(engine, ShellIsolatedEngine)
        ready = [engine.ready_count]
        await asyncio.gather(*(engine.execute(request(nb)) for _ in range(3)))
        await engine.wait_ready()
        ready.append(engine.ready_count)
        for _ in range(100):  # idle: back to the minimum after 1 s
            if engine.ready_count == 1:
                break
            await asyncio.sleep(0.05)
        ready.append(engine.ready_count)
        return ready

    assert with_engine(ShellIsolatedEngine(1, 3, idle_seconds=1.0), body) == [1, 3, 1]


HOSTILE_MESSAGES = {
    "huge": "os.write(3, struct.pack('!I', 2**31))",
    "not-json": "os.write(3, struct.pack('!I', 3) + b'{{{')",
    "bad-shape": "os.write(3, struct.pack('!I', 5) + b'[\"o\"]')",
    "bad-output": 'm = b\'["o", "stream", {"name": 1, "text": 2}]\'\n'
    "os.write(3, struct.pack('!I', len(m)) + m)",
    "closed": "os.close(3)\ntime.sleep(30)",
}


@pytest.mark.parametrize("make", [ShellIsolatedEngine, ShellReuseEngine], ids=["isolated", "reuse"])
def test_hostile_shell_messages_cannot_crash_the_engine(make: Factory) -> None:
    """A cell writing what it likes to the shell's socket fails its own execution, and only it."""
    nb = notebook(
        "import os, struct, time",
        ("how = ''", ["parameters"]),
        "print(os.getpid(), flush=True)\n"
        + "\n".join(
            f"if how == {name!r}:\n    {code.replace(chr(10), chr(10) + '    ')}"
            for name, code in HOSTILE_MESSAGES.items()
        ),
        "print('after')\n" + SAVE.replace("2 * x", "2"),
    )

    async def body(engine: Engine) -> list[ExecutionOutcome]:
        return [
            await engine.execute(request(nb, f"how = {name!r}", inject_after=1, timeout=20))
            for name in [*HOSTILE_MESSAGES, ""]
        ]

    *hostile, fine = with_engine(make(), body)
    for outcome in hostile:
        assert outcome.status == "failed", outcome.error
        assert outcome.error is not None and outcome.error["reason"] == "kernel_died"
        assert outcome.error["cell"] == 3 and "after" not in outcome.logs
        assert outcome.duration < 15  # not left to the timeout
        assert gone(pids_in(outcome)[0])
    assert "protocol" in str(hostile[0].error)
    assert fine.status == "completed" and fine.output == {"y": 2}
