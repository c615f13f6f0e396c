"""``nbplane api``: notebook APIs from the command line, against one real server with real
kernels (module-scoped); the commands run in-process with click's runner (stdout is then not
a terminal: tables are tab-separated rows), and in a subprocess where ``main``'s one-line error
and exit code are what is tested."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nbplane.apis.models import HOPS
from nbplane.cli import nbplane
from nbplane.errors import ConfigError, InvalidInput, NotFound
from tests.integration.api_notebooks import NUMBER_IN, write_api
from tests.integration.server_fixture import Server, running_server

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-apis")
    notebooks = root / "apis"
    shutil.copytree(REPOSITORY / "examples" / "apis", notebooks)  # double, as the README has it
    write_api(
        notebooks,
        "boom",
        [("x = 1", ["parameters"]), "raise ValueError(f'bad x {x}')"],
        {"input": NUMBER_IN, "output": {}},
    )
    write_api(
        notebooks,
        "slow",
        [("seconds = 30", ["parameters"]), "import time\ntime.sleep(seconds)"],
        {"input": {"type": "object", "properties": {"seconds": {"type": "number"}}}, "output": {}},
    )
    with running_server(notebooks, root / "home", f"sqlite:///{root / 'n.db'}") as running:
        yield running


def api(server: Server, *args: str) -> Result:
    """``nbplane api ARGS`` against the server, naming it with --url/--token."""
    return CliRunner().invoke(
        nbplane,
        ["api", *args, "--url", server.url, "--token", server.token],
        prog_name="nbplane",
    )


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def in_order(hops: list[str]) -> bool:
    """Where a completed execution's time went, as its record shows it: the worker's hops and
    those of the engine that it reports, in order."""
    worker = {"validate_input", "queue", "validate_output", "other"}
    return worker <= set(hops) and hops == [hop for hop in HOPS if hop in hops]


def rows(result: Result) -> list[list[str]]:
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_list_and_show_say_what_an_api_takes(server: Server) -> None:
    listed = api(server, "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    double = next(entry for entry in as_json(listed) if entry["name"] == "double")
    assert double["status"] == "ok" and double["input"]["required"] == ["x"]

    table = api(server, "list")
    assert table.exit_code == 0, table.output
    assert rows(table)[0] == ["name", "status", "engine", "timeout", "parameters", "reason"]
    assert ["double", "ok", "isolated", "60s", "x*", ""] in rows(table)
    assert table.stderr == "notebook APIs\n"  # piped: the title off stdout, no box drawing

    shown = api(server, "show", "double")
    assert shown.exit_code == 0, shown.output
    assert ["parameters", "x*"] in rows(shown)
    assert ["output", '{"type":"object","properties":{"y":{"type":"number"}}}'] in rows(shown)
    assert as_json(api(server, "show", "double", "-o", "json")) == double


def test_run_wait_shows_the_result_and_the_execution_reads_back(
    server: Server, tmp_path: Path
) -> None:
    ran = api(server, "run", "double", "--parameters", '{"x": 3}', "--wait")
    assert ran.exit_code == 0, ran.output
    assert ["status", "completed"] in rows(ran)
    assert ["output", '{"y":6}'] in rows(ran)
    [timings] = [value for field, value in rows(ran) if field == "timings"]
    assert in_order([hop.split(" ")[0] for hop in timings.split(", ")])

    started = api(server, "run", "double", "--parameters", '{"x": 4}', "-o", "json")
    assert started.exit_code == 0, started.output
    execution = as_json(started)
    assert execution["status"] in ("queued", "running", "completed")
    waited = api(server, "execution", execution["id"], "--wait", "-o", "json")
    assert waited.exit_code == 0, waited.output
    assert as_json(waited)["status"] == "completed"
    assert as_json(waited)["output"] == {"y": 8}
    assert in_order(list(as_json(waited)["timings"]))

    output = api(server, "output", execution["id"])
    assert output.exit_code == 0, output.output
    assert json.loads(output.stdout) == {"y": 8}
    written = api(server, "output", execution["id"], "--to", str(tmp_path / "y.json"), "-o", "json")
    assert written.exit_code == 0, written.output
    assert as_json(written)["path"] == str(tmp_path / "y.json")
    assert json.loads((tmp_path / "y.json").read_text()) == {"y": 8}
    page = api(server, "output", execution["id"], "--html", "--to", str(tmp_path / "run.html"))
    assert page.exit_code == 0, page.output
    assert "<html" in (tmp_path / "run.html").read_text().lower()

    listed = api(server, "executions", "double", "--status", "completed", "-o", "json")
    assert listed.exit_code == 0, listed.output
    found = as_json(listed)
    assert found["total"] >= 2 and {item["notebook"] for item in found["items"]} == {"double"}
    assert execution["id"] in {item["id"] for item in found["items"]}
    table = api(server, "executions", "double", "--limit", "1")
    assert table.exit_code == 0, table.output
    header, first = rows(table)
    assert header == ["id", "notebook", "status", "created", "took", "owner", "reason"]
    assert first[1:3] == ["double", "completed"]


def test_a_failed_execution_exits_1_with_its_reason(server: Server) -> None:
    ran = api(server, "run", "boom", "--parameters", '{"x": 7}', "--wait", "-o", "json")
    assert ran.exit_code == 1 and isinstance(ran.exception, SystemExit), ran.output
    failed = as_json(ran)
    assert failed["status"] == "failed"
    assert "ValueError" in failed["reason"] and "bad x 7" in failed["reason"]
    nothing = api(server, "output", failed["id"])
    assert isinstance(nothing.exception, NotFound)
    assert "has no output (failed" in nothing.exception.message


def test_a_slow_execution_waited_for_briefly_then_cancelled(server: Server) -> None:
    ran = api(server, "run", "slow", "--parameters", '{"seconds": 60}', "--wait", "1")
    assert ran.exit_code == 1 and isinstance(ran.exception, SystemExit), ran.output
    [execution_id] = [row[1] for row in rows(ran) if row[0] == "id"]
    assert "is still" in ran.stdout and f"nbplane api execution {execution_id}" in ran.stdout

    cancelled = api(server, "cancel", execution_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.startswith(f"execution {execution_id} ")
    final = api(server, "execution", execution_id, "--wait", "30", "-o", "json")
    assert final.exit_code == 130, final.output
    assert as_json(final)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (["--parameters", '{"x": '], "parameters", "--parameters is not valid JSON"),
        (["--parameters", "[3]"], "parameters", "--parameters must be a JSON object, got list"),
        (
            ["--parameters", "{}", "--parameters-file", "{file}"],
            "parameters",
            "pass --parameters or --parameters-file, not both",
        ),
        (
            ["--parameters-file", "{file}"],
            "parameters_file",
            "--parameters-file {file} is not valid JSON: Expecting ',' delimiter at line 2",
        ),
    ],
)
def test_bad_parameters_name_the_option(
    server: Server, tmp_path: Path, args: list[str], field: str, message: str
) -> None:
    file = tmp_path / "p.json"
    file.write_text('{"x": 1\n "y": 2}')
    result = api(server, "run", "double", *(arg.replace("{file}", str(file)) for arg in args))
    assert isinstance(result.exception, ConfigError), result.output
    assert result.exception.fields == {"field": field}
    assert result.exception.message.startswith(message.replace("{file}", str(file)))


def test_parameters_the_contract_refuses_are_named_by_the_server(server: Server) -> None:
    result = api(server, "run", "double", "--parameters", '{"x": "three"}')
    assert isinstance(result.exception, InvalidInput), result.output
    assert "x" in result.exception.message


def test_an_unknown_api_is_one_line_and_exit_2(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbplane", "api", "run", "nosuch", "--parameters", "{}"],
        env={**os.environ, "NBPLANE_URL": server.url, "NBPLANE_TOKEN": server.token},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: no notebook API named 'nosuch'\n"
    assert done.stdout == ""
