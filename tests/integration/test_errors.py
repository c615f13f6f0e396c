"""When a step fails: exit code 1 and a message that says where (notebook, cell, id, step, line
and its text) and what (the exception or the database's error), for Python and SQL alike."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, write_notebook


def run_record(env: Env, job: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The record of the run ``result`` printed, as ``show-run --output json`` gives it."""
    found = re.search(r" · run (\d+) · ", result.stdout)
    assert found, f"no run number in the output:\n{result.stdout}"
    return json.loads(env.run("job", "show-run", str(job), found[1], "--output", "json").stdout)


def cell_ids(notebook: Path) -> list[str]:
    return [cell.get("id") for cell in json.loads(notebook.read_text())["cells"]]


def flat(text: str) -> str:
    """Whitespace collapsed, so a message the console wrapped still matches."""
    return " ".join(text.split())


def assert_reported(result: subprocess.CompletedProcess[str], message: str) -> None:
    """The CLI printed the recorded ``message`` and no frame of nbplane's own code."""
    assert flat(message) in flat(result.stdout), result.stdout
    output = result.stdout + result.stderr
    for internal in ("nbplane/jobs", "nbplane/cli", "interactiveshell.py", "site-packages"):
        assert internal not in output, output


def assert_names(
    message: str,
    *,
    step: int,
    file: str,
    line: int,
    line_text: str,
    error: str,
    cell: int | None = None,
    cell_id: str | None = None,
) -> None:
    """The failure message says where (step, file, cell and its id, line and its text) and
    what (the exception or database error)."""
    assert re.search(rf"\bstep {step}\b", message), message
    assert file in message, message
    if cell is not None:
        assert re.search(rf"\b{re.escape(file)} cell {cell}\b", message), message
    if cell_id is not None:
        assert cell_id in message, message
    assert re.search(rf"\bline {line}\b", message), message
    assert line_text in message, message
    assert error in message, message


def output_lines(stdout: str) -> list[str]:
    """What steps wrote, as the CLI shows it (``  | text``), without the gutter."""
    return [line.split("| ", 1)[1] for line in stdout.splitlines() if line.startswith("  | ")]


def is_postgres(env: Env) -> bool:
    return env.db_url.startswith("postgresql")


def missing_table_error(env: Env, table: str) -> str:
    if is_postgres(env):
        return f'UndefinedTable: relation "{table}" does not exist'
    return f"OperationalError: no such table: {table}"


# Python cells


def test_python_cell_error_names_notebook_cell_id_step_line_and_exception(
    env: Env, tmp_path: Path
) -> None:
    job = tmp_path / "pyfail"
    job.mkdir()
    notebook = write_notebook(
        job / "10_load.ipynb",
        [
            ("markdown", "# Load"),
            "x = 1",
            ("print('not a step')", []),
            "y = 2\nz = y + x\nraise ValueError(f'bad value {z}')\nprint('after the raise')",
        ],
    )
    cell_id = cell_ids(notebook)[3]

    result = env.run("job", "run", str(job), check=1)

    assert "after the raise" not in output_lines(result.stdout)
    run = run_record(env, job, result)
    assert run["status"] == "failed"
    error = run["steps"][1]["error"]
    message = error["message"]
    assert_names(
        message,
        step=2,
        file="10_load.ipynb",
        cell=4,
        cell_id=cell_id,
        line=3,
        line_text="raise ValueError(f'bad value {z}')",
        error="ValueError: bad value 3",
    )
    assert_reported(result, message)
    assert {
        key: error[key]
        for key in (
            "step",
            "file",
            "cell",
            "cell_id",
            "line",
            "line_text",
            "exception",
            "raised_in",
        )
    } == {
        "step": "10_load.ipynb#4",
        "file": "10_load.ipynb",
        "cell": 4,
        "cell_id": cell_id,
        "line": 3,
        "line_text": "raise ValueError(f'bad value {z}')",
        "exception": "ValueError",
        "raised_in": None,
    }
    assert "ValueError" in error["traceback"]
    assert run["error"]["message"] == message
    assert "Traceback" in result.stdout  # the user's traceback is shown too


def test_error_in_a_function_from_an_earlier_cell_says_where_it_was_raised(
    env: Env, tmp_path: Path
) -> None:
    job = tmp_path / "deep"
    job.mkdir()
    notebook = write_notebook(
        job / "1_nb.ipynb",
        [
            "def parse(value):\n    # digits only\n    return int(value)",
            "a = parse('1')\nb = parse('x')",
        ],
    )
    cell_id = cell_ids(notebook)[1]

    result = env.run("job", "run", str(job), check=1)

    error = run_record(env, job, result)["steps"][1]["error"]
    message = error["message"]
    assert_names(
        message,
        step=2,
        file="1_nb.ipynb",
        cell=2,
        cell_id=cell_id,
        line=3,
        line_text="return int(value)",
        error="ValueError: invalid literal for int() with base 10: 'x'",
    )
    # it says the line is in cell 1, where the function was defined
    assert re.search(r"raised at 1_nb\.ipynb cell 1\b[^;]*\bline 3\b", message), message
    assert_reported(result, message)
    assert (error["cell"], error["raised_in"], error["line"]) == (2, "1_nb.ipynb#1", 3)


def test_syntax_error_in_a_cell(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "syntax"
    job.mkdir()
    notebook = write_notebook(
        job / "1_nb.ipynb",
        [
            "print('before')",
            "x = 1\nif x > 0\n    print('inside')",
            "print('after')",
        ],
    )
    cell_id = cell_ids(notebook)[1]

    result = env.run("job", "run", str(job), check=1)

    assert output_lines(result.stdout) == ["before"]
    run = run_record(env, job, result)
    assert [s["status"] for s in run["steps"]] == ["succeeded", "failed", "not run"]
    error = run["steps"][1]["error"]
    assert_names(
        error["message"],
        step=2,
        file="1_nb.ipynb",
        cell=2,
        cell_id=cell_id,
        line=2,
        line_text="if x > 0",
        error="SyntaxError: ",
    )
    assert_reported(result, error["message"])
    assert (error["line"], error["line_text"], error["exception"]) == (2, "if x > 0", "SyntaxError")


# SQL


@pytest.mark.parametrize("string_sources", [False, True], ids=["lines", "string"])
def test_failing_statement_in_a_multi_statement_sql_cell(
    env: Env, tmp_path: Path, string_sources: bool
) -> None:
    job = tmp_path / "sqlfail"
    job.mkdir()
    notebook = write_notebook(
        job / "1_nb.ipynb",
        [
            "print('python first')",
            "%%sql\n"  # line 1
            "CREATE TABLE t (x INTEGER);\n"  # line 2
            "\n"  # line 3
            "INSERT INTO t VALUES (1);\n"  # line 4
            "INSERT INTO missing_table VALUES (2);\n"  # line 5
            "INSERT INTO t VALUES (3);",  # line 6
        ],
        string_sources=string_sources,
    )
    cell_id = cell_ids(notebook)[1]

    result = env.run("job", "run", str(job), check=1)

    assert env.query("SELECT x FROM t") == [(1,)]  # earlier statements ran, later ones did not
    error = run_record(env, job, result)["steps"][1]["error"]
    assert_names(
        error["message"],
        step=2,
        file="1_nb.ipynb",
        cell=2,
        cell_id=cell_id,
        line=5,
        line_text="INSERT INTO missing_table VALUES (2);",
        error=missing_table_error(env, "missing_table"),
    )
    assert_reported(result, error["message"])
    assert (error["cell"], error["cell_id"], error["line"], error["line_text"]) == (
        2,
        cell_id,
        5,
        "INSERT INTO missing_table VALUES (2);",
    )
    assert error["statement"] == "INSERT INTO missing_table VALUES (2)"


def test_sql_error_line_is_the_statement_not_a_comment_before_it(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "sqlcomment"
    job.mkdir()
    notebook = write_notebook(
        job / "1_nb.ipynb",
        [
            "%%sql\n"  # line 1
            "CREATE TABLE t (x INTEGER);\n"  # line 2
            "-- now load the rest\n"  # line 3
            "INSERT INTO nowhere VALUES (2);",  # line 4
        ],
    )
    cell_id = cell_ids(notebook)[0]

    result = env.run("job", "run", str(job), check=1)

    error = run_record(env, job, result)["steps"][0]["error"]
    assert_names(
        error["message"],
        step=1,
        file="1_nb.ipynb",
        cell=1,
        cell_id=cell_id,
        line=4,
        line_text="INSERT INTO nowhere VALUES (2);",
        error=missing_table_error(env, "nowhere"),
    )
    assert (error["line"], error["line_text"]) == (4, "INSERT INTO nowhere VALUES (2);")


def test_failing_sql_file(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "sqlfile"
    job.mkdir()
    write_notebook(job / "1_nb.ipynb", ["print('notebook ran')"])
    (job / "2_load.sql").write_text(
        "CREATE TABLE t (x INTEGER);\n"
        "INSERT INTO t VALUES (1);\n"
        "\n"
        "SELECT x FROM absent_table;\n"
        "INSERT INTO t VALUES (2);\n"
    )
    (job / "3_after.sql").write_text("INSERT INTO t VALUES (3);\n")

    result = env.run("job", "run", str(job), check=1)

    assert env.query("SELECT x FROM t") == [(1,)]
    run = run_record(env, job, result)
    error = run["steps"][1]["error"]
    assert_names(
        error["message"],
        step=2,
        file="2_load.sql",
        line=4,
        line_text="SELECT x FROM absent_table;",
        error=missing_table_error(env, "absent_table"),
    )
    assert_reported(result, error["message"])
    assert (error["file"], error["cell"], error["line"], error["line_text"]) == (
        "2_load.sql",
        None,
        4,
        "SELECT x FROM absent_table;",
    )
    assert [s["status"] for s in run["steps"]] == ["succeeded", "failed", "not run"]


def test_a_bind_parameter_without_a_value_names_it(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "unbound"
    job.mkdir()
    write_notebook(
        job / "1_sql.ipynb",
        ["%%sql\nCREATE TABLE t (x INTEGER);\n\nINSERT INTO t VALUES (:amount)"],
    )

    result = env.run("job", "run", str(job), "--arguments", '{"amuont": 3}', check=1)

    error = run_record(env, job, result)["steps"][0]["error"]
    assert_names(
        error["message"],
        step=1,
        file="1_sql.ipynb",
        cell=1,
        line=4,
        line_text="INSERT INTO t VALUES (:amount)",
        error="no value for :amount",
    )
    assert_reported(result, error["message"])
    assert env.query("SELECT x FROM t") == []


# .py steps


def test_failing_python_file_step_names_the_line_in_the_file(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "pyfile"
    job.mkdir()
    (job / "1_ok.sql").write_text("CREATE TABLE t (x INTEGER);\n")
    (job / "2_transform.py").write_text(
        "import json\n"
        "\n"
        "\n"
        "def lookup(record):\n"
        "    return record['missing']\n"
        "\n"
        "\n"
        "def run(job_input):\n"
        "    print('transform started')\n"
        "    lookup(json.loads('{}'))\n"
    )

    result = env.run("job", "run", str(job), check=1)

    assert "transform started" in output_lines(result.stdout)
    run = run_record(env, job, result)
    error = run["steps"][1]["error"]
    assert_names(
        error["message"],
        step=2,
        file="2_transform.py",
        line=5,
        line_text="return record['missing']",
        error="KeyError: 'missing'",
    )
    assert_reported(result, error["message"])
    assert (error["file"], error["line"], error["exception"]) == ("2_transform.py", 5, "KeyError")
    assert "2_transform.py" in error["traceback"] and "line 10" in error["traceback"]


# what happens after a failure


def test_steps_after_a_failure_are_not_run_and_the_run_is_failed(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "stops"
    job.mkdir()
    write_notebook(
        job / "1_nb.ipynb",
        [
            "%%sql\nCREATE TABLE t (x INTEGER);\nINSERT INTO t VALUES (1)",
            "job_input.execute_query('INSERT INTO t VALUES (2)')\nraise RuntimeError('stop here')",
            "job_input.execute_query('INSERT INTO t VALUES (3)')",
        ],
    )
    (job / "2_after.sql").write_text("INSERT INTO t VALUES (4);\n")
    (job / "3_after.py").write_text(
        "def run(job_input):\n    job_input.execute_query('INSERT INTO t VALUES (5)')\n"
    )

    result = env.run("job", "run", str(job), check=1)

    assert sorted(env.query("SELECT x FROM t")) == [(1,), (2,)]
    run = run_record(env, job, result)
    assert run["status"] == "failed"
    assert "stop here" in run["error"]["message"]
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("1_nb.ipynb#1", "succeeded"),
        ("1_nb.ipynb#2", "failed"),
        ("1_nb.ipynb#3", "not run"),
        ("2_after.sql", "not run"),
        ("3_after.py", "not run"),
    ]
    for step in run["steps"][2:]:
        assert step["reason"] == "step 2 (1_nb.ipynb#2) failed"
        assert step["error"] is None
    assert "RuntimeError: stop here" in run["steps"][1]["error"]["message"]
    listed = json.loads(env.run("job", "runs", str(job), "--output", "json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(run["id"], "failed")]
