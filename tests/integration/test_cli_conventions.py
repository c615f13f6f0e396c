"""The conventions every ``nbplane`` command follows: ``--version``, help without arguments,
``-o/--output`` as a format only, plain piped output, confirmations for deletions, the exit codes
the README promises, no nbformat warnings, shell completion, and the README's notebook API.

In-process with click's runner where it can tell (fast); a subprocess only where ``main``'s exit
code and stderr line are what is tested."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from rich.table import Table

from nbplane.cli import nbplane
from nbplane.cli._common import FORMATS, CliConsole
from nbplane.errors import ConfigError
from tests.conftest import write_notebook
from tests.integration.server_fixture import running_server

REPOSITORY = Path(__file__).resolve().parents[2]


WITHOUT_OUTPUT = {
    "serve": "runs the server until it is stopped; what it shows is its log",
    "worker": "runs notebook-API executions until it is stopped; what it shows is its log",
    "job run-execution": "hidden, what job executors start; its log goes to the server",
    "job logs": "prints the execution's log itself, as it was written",
    "session logs": "prints the session server's output itself",
}
"""The only commands without ``-o/--output``, and why."""


def invoke(*args: str, **options: Any) -> Result:
    return CliRunner().invoke(nbplane, list(args), prog_name="nbplane", **options)


def every_command(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[str, click.Command]]:
    found = []
    with click.Context(group) as ctx:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append((" ".join((*path, name)), command))
            if isinstance(command, click.Group):
                found += every_command(command, (*path, name))
    return found


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A home and SQLite databases of this test's own, for in-process runs and subprocesses."""
    from nbplane.settings import get_settings

    variables = {
        "NBPLANE_HOME": str(tmp_path / "home"),
        "NBPLANE_STORE_URL": f"sqlite:///{tmp_path / 'nbplane.db'}",
        "NBPLANE_DB_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "NO_COLOR": "1",
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NBPLANE_URL", raising=False)
    monkeypatch.delenv("NBPLANE_TOKEN", raising=False)
    get_settings.cache_clear()
    return variables


def run_cli(variables: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "nbplane", *args],
        env={**os.environ, **variables},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_names_the_installed_package() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"nbplane {version('nbplane')}\n"


def test_a_group_without_arguments_prints_its_help_and_succeeds() -> None:
    groups = [
        (),
        *(
            tuple(name.split())
            for name, command in every_command(nbplane)
            if isinstance(command, click.Group)
        ),
    ]
    assert ("db",) in groups and ("job", "warm") in groups
    for args in groups:
        result = invoke(*args)
        assert result.exit_code == 0, args
        assert result.stdout.startswith(f"Usage: nbplane {' '.join(args)}".rstrip()), args
        assert "Commands:" in result.stdout, args


def test_o_is_a_format_in_every_command() -> None:
    with_output = set()
    for name, command in every_command(nbplane):
        for param in command.params:
            if "-o" in getattr(param, "opts", []):
                assert param.opts == ["-o", "--output"], name
            if param.name != "output":
                continue
            with_output.add(name)
            assert isinstance(param, click.Option) and param.opts == ["-o", "--output"], name
            assert param.default == "table", name
            if isinstance(param.type, click.Choice):
                assert tuple(param.type.choices) == FORMATS, name
            else:  # the commands whose -o was a path: still accepted, deprecated (below)
                assert name in ("job export", "job download"), name
    leaves = {
        name for name, command in every_command(nbplane) if not isinstance(command, click.Group)
    }
    assert leaves - with_output == set(WITHOUT_OUTPUT), "every command that shows something, "
    "one-line actions included, takes -o/--output (or says here why it does not)"
    assert {"api run", "job delete", "session stop", "token create", "db status"} <= with_output


def test_export_writes_to_to_and_o_path_still_works_with_a_note(
    local: dict[str, str], tmp_path: Path
) -> None:
    created = invoke("job", "create", "etl", "--directory", str(tmp_path), "-o", "json")
    assert created.exit_code == 0, created.output
    job = Path(json.loads(created.stdout)["path"])
    assert job == tmp_path / "etl"

    shown = invoke("job", "export", str(job), "--to", str(tmp_path / "a.zip"), "-o", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {
        "path": str(tmp_path / "a.zip"),
        "files": ["10_hello.ipynb", "config.ini"],
    }
    old = invoke("job", "export", str(job), "-o", str(tmp_path / "b.zip"))
    assert old.exit_code == 0, old.output
    assert zipfile.ZipFile(tmp_path / "b.zip").namelist() == ["10_hello.ipynb", "config.ini"]
    assert old.stderr == f"note: -o/--output PATH is deprecated; use --to {tmp_path / 'b.zip'}\n"
    assert f"wrote {tmp_path / 'b.zip'}" in old.stdout

    missing = invoke("job", "export", str(job))
    assert isinstance(missing.exception, ConfigError)
    assert missing.exception.fields == {"field": "to"}


def test_piped_tables_are_plain_rows_never_wrapped(local: dict[str, str]) -> None:
    teams = [f"team-{n:02d}-with-a-long-name" for n in range(6)]
    created = invoke("user", "create", "carol", *(f"--team={team}" for team in teams))
    assert created.exit_code == 0, created.output

    listed = invoke("user", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "name\tadmin\tteams\tmax sessions\tcreated"
    [carol] = [line.split("\t") for line in lines if line.startswith("carol\t")]
    assert carol[2] == ", ".join(teams)  # one line of far more than 80 characters
    assert not set(listed.stdout) & set("│┃━─┏┗╇┡└┘")
    assert listed.stderr == "users\n"  # the title, kept out of the rows


def test_a_terminal_still_gets_rich_tables() -> None:
    table = Table("a", "b", title="t")
    table.add_row("1", "2")
    console = CliConsole(force_terminal=True, width=40, record=True, file=io.StringIO())
    console.print(table)
    assert "┃ a ┃ b ┃" in console.export_text()


@pytest.mark.parametrize(
    "args",
    [
        ("job", "delete", "etl", "--team", "sales"),
        ("session", "stop", "0123abcd", "--purge"),
        ("connection", "delete", "warehouse"),
        ("user", "delete", "carol"),
    ],
)
def test_deleting_without_a_terminal_needs_yes(
    args: tuple[str, ...], local: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server nobody listens on: the refusal comes before any request
    monkeypatch.setenv("NBPLANE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("NBPLANE_TOKEN", "unused")
    if args[0] == "user":
        monkeypatch.delenv("NBPLANE_URL")
        args = (*args, "--local")
    result = invoke(*args)
    assert isinstance(result.exception, ConfigError), result.output
    assert result.exception.fields == {"field": "yes"}
    assert "pass --yes" in result.exception.message


def test_refusal_to_delete_is_one_line_and_exit_2(local: dict[str, str]) -> None:
    result = run_cli(local, "session", "stop", "0123abcd", "--purge")
    assert result.returncode == 2
    assert result.stderr == (
        "error: refusing to delete a session's files without a terminal to ask on: pass --yes\n"
    )
    assert result.stdout == ""


def test_job_run_output_json_summarizes_the_run(local: dict[str, str], tmp_path: Path) -> None:
    job = tmp_path / "etl"
    job.mkdir()
    write_notebook(job / "10_main.ipynb", ["x = 1\nprint('hello')", "y = 2\nz = x / 0"])
    result = run_cli(local, "job", "run", str(job), "--output", "json")
    assert result.returncode == 1, result.stderr
    assert "hello" in result.stderr and "ZeroDivisionError" in result.stderr  # progress
    summary = json.loads(result.stdout)
    assert (summary["run"], summary["job"], summary["status"]) == (1, "etl", "failed")
    assert [(s["step"], s["cell"], s["status"]) for s in summary["steps"]] == [
        (1, 1, "succeeded"),
        (2, 2, "failed"),
    ]
    assert all(s["duration"] >= 0 for s in summary["steps"])
    failure = summary["failure"]
    assert (failure["file"], failure["cell"], failure["line"]) == ("10_main.ipynb", 2, 2)
    assert failure["exception"] == "ZeroDivisionError"


def test_a_bad_db_url_exits_2_with_one_line_and_no_run(
    local: dict[str, str], tmp_path: Path
) -> None:
    job = tmp_path / "etl"
    job.mkdir()
    write_notebook(job / "10_main.ipynb", ["print('never')"])
    for url, problem in [("nosuch://x", "Can't load plugin"), ("not a url", "Could not parse")]:
        result = run_cli(local, "job", "run", str(job), "--db", url)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith("error: cannot use database") and problem in line
        assert "never" not in result.stdout
    assert invoke("job", "runs", str(job), "-o", "json").stdout == "[]\n"


def test_notebooks_without_cell_ids_give_no_nbformat_warning(
    local: dict[str, str], tmp_path: Path
) -> None:
    job = tmp_path / "old"
    job.mkdir()
    path = write_notebook(job / "10_main.ipynb", ["print(1)"])
    document = json.loads(path.read_text())
    document["nbformat_minor"] = 5
    for cell in document["cells"]:
        cell.pop("id", None)
    path.write_text(json.dumps(document))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("job", "export", str(job), "--to", str(tmp_path / "old.zip"))
    assert result.exit_code == 0, result.output
    assert [w for w in caught if "missing an id" in str(w.message)] == []
    assert "Warning" not in result.stderr


def test_bash_completion_script_is_produced() -> None:
    result = invoke(env={"_NBPLANE_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_nbplane_completion()" in result.stdout
    assert "complete -o nosort -F _nbplane_completion nbplane" in result.stdout


def test_the_readme_notebook_api_example_runs(tmp_path: Path) -> None:
    """What README's "Notebooks as REST APIs" serves: examples/apis, as shipped."""
    examples = REPOSITORY / "examples" / "apis"
    before = sorted(examples.iterdir())
    with running_server(examples, tmp_path / "home", f"sqlite:///{tmp_path / 'n.db'}") as server:
        execution = server.execute("double", {"x": 3})
        assert execution["status"] == "completed", execution
        assert execution["output"] == {"y": 6}
        refused = server.client.post(
            "/api/v1/notebooks/double/executions", json={"parameters": {"x": "three"}}
        )
        assert refused.status_code == 422
    assert sorted(examples.iterdir()) == before, "serving leaves the examples as they are"


def test_one_line_actions_say_what_they_did_as_json(local: dict[str, str]) -> None:
    def json_of(*args: str, exit_code: int = 0) -> Any:
        result = invoke(*args, "-o", "json")
        assert result.exit_code == exit_code, (args, result.output)
        return json.loads(result.stdout)

    assert json_of("db", "upgrade")["after"] == json_of("db", "status")["head"]
    assert json_of("db", "status")["behind"] is False
    assert json_of("user", "create", "boss", "--admin")["admin"] is True  # dora is not the last
    created = json_of("user", "create", "dora", "--team", "sales")
    assert (created["name"], created["teams"]) == ("dora", ["sales"])
    assert json_of("user", "join", "dora", "ops")["teams"] == ["ops", "sales"]
    assert json_of("user", "admin", "dora")["admin"] is True
    made = json_of("token", "create", "dora-ci", "--user", "dora")
    assert (made["name"], made["user"]) == ("dora-ci", "dora") and made["token"]
    assert json_of("token", "revoke", "dora-ci") == {"name": "dora-ci", "revoked": True}
    assert json_of("user", "admin", "dora", "--revoke")["admin"] is False
    assert json_of("user", "delete", "dora", "--yes") == {"name": "dora", "deleted": True}
    assert json_of("job", "warm", "status", exit_code=1) == {"running": False}
    assert json_of("logout")["logged_out"] is False
