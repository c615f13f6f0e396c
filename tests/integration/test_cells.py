"""What a step cell can do: IPython semantics, string sources, %%sql with several statements,
{name} placeholders and :name parameters, skip_remaining_steps(), output streamed while the step
runs."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, write_notebook


def run_record(env: Env, job: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The record of the run ``result`` printed, as ``show-run --output json`` gives it."""
    found = re.search(r" · run (\d+) · ", result.stdout)
    assert found, f"no run number in the output:\n{result.stdout}"
    return json.loads(env.run("job", "show-run", str(job), found[1], "--output", "json").stdout)


def output_lines(stdout: str) -> list[str]:
    """What steps wrote, as the CLI shows it (``  | text``), without the gutter."""
    return [line.split("| ", 1)[1] for line in stdout.splitlines() if line.startswith("  | ")]


def test_cells_have_ipython_semantics(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "ipy"
    job.mkdir()
    write_notebook(
        job / "1_magic.ipynb",
        [
            "%time total = sum(range(10))\nprint('total', total)",
            "!echo hi-from-the-shell\nfiles = !ls\nprint('ls sees', sorted(files))",
            "class Shown:\n"
            "    def __repr__(self):\n        return 'plain-repr-of-shown'\n"
            "    def _repr_html_(self):\n        return '<b>html-repr-of-shown</b>'\n"
            "display(Shown())\n"
            "42 * 2",
            "unique_int_name = 5\n%who int",
        ],
    )

    result = env.run("job", "run", str(job))

    lines = output_lines(result.stdout)
    assert any(line.startswith("Wall time:") for line in lines), lines
    assert "total 45" in lines
    assert "hi-from-the-shell" in lines
    assert "ls sees ['1_magic.ipynb']" in lines  # shell commands run in the job directory
    assert "plain-repr-of-shown" in lines
    assert "84" in lines  # the value of the cell's last expression, as in Jupyter
    who = [line for line in lines if "unique_int_name" in line]
    assert who and "total" in who[0].split(), lines  # %who int lists the notebook's ints

    # display() keeps the rich representation in the run record
    page = tmp_path / "run.html"
    run = run_record(env, job, result)
    env.run("job", "show-run", str(job), str(run["number"]), "--html", str(page))
    assert "<b>html-repr-of-shown</b>" in page.read_text(encoding="utf-8")


def test_cells_with_string_sources_run_including_sql(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "strings"
    job.mkdir()
    notebook = write_notebook(
        job / "1_strings.ipynb",
        [
            "rows = [(1, 'one'), (2, 'two')]\nprint('python ran with', len(rows))",
            "%%sql\nCREATE TABLE t (n INTEGER, word TEXT);\n"
            "INSERT INTO t VALUES (1, 'one');\nINSERT INTO t VALUES (2, 'two');",
            "%%vdksql\nINSERT INTO t VALUES (3, 'three')",
            "job_input.send_tabular_data_for_ingestion(\n"
            "    [(4, 'four')], column_names=['n', 'word'], destination_table='t')",
        ],
        string_sources=True,
    )
    assert all(
        isinstance(cell["source"], str) for cell in json.loads(notebook.read_text())["cells"]
    )

    result = env.run("job", "run", str(job))

    assert "python ran with 2" in result.stdout
    assert sorted(env.query("SELECT n, word FROM t")) == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
    ]
    assert [s["kind"] for s in run_record(env, job, result)["steps"]] == [
        "python-cell",
        "sql-cell",
        "sql-cell",
        "python-cell",
    ]


def test_several_sql_statements_in_a_cell_and_a_file(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "multi"
    job.mkdir()
    write_notebook(
        job / "1_sql.ipynb",
        [
            "%%sql\n"
            "-- set up\n"
            "CREATE TABLE t (x INTEGER, note TEXT);\n"
            "INSERT INTO t VALUES (1, 'a;b');\n"
            "\n"
            "INSERT INTO t\n"
            "VALUES (2, 'it''s; fine');\n"
            "/* a comment; with a semicolon */\n"
            "UPDATE t SET x = x * 10;\n"
            "SELECT x, note FROM t ORDER BY x",
        ],
    )
    (job / "2_more.sql").write_text(
        "INSERT INTO t VALUES (3, 'from file');\n"
        "DELETE FROM t WHERE x = 10;\n"
        "-- only a comment at the end;\n"
    )

    result = env.run("job", "run", str(job))

    assert sorted(env.query("SELECT x, note FROM t")) == [(3, "from file"), (20, "it's; fine")]
    lines = output_lines(result.stdout)
    assert "20 | it's; fine" in lines  # the cell's last statement returned rows, shown


def test_placeholders_come_from_arguments(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "args"
    job.mkdir()
    write_notebook(
        job / "1_sql.ipynb",
        [
            "%%sql\nCREATE TABLE t (day TEXT, n INTEGER, src TEXT);\n"
            "INSERT INTO t VALUES ('{day}', {n}, 'cell')",
            "print('rows', job_input.execute_query(\"SELECT n FROM t WHERE day = '{day}'\"))",
        ],
    )
    (job / "2_file.sql").write_text("INSERT INTO t VALUES ('{day}', {n} + 1, 'file');\n")

    result = env.run("job", "run", str(job), "--arguments", '{"day": "2024-01-02", "n": 7}')

    assert sorted(env.query("SELECT day, n, src FROM t")) == [
        ("2024-01-02", 7, "cell"),
        ("2024-01-02", 8, "file"),
    ]
    assert "rows [(7,)]" in output_lines(result.stdout)
    assert run_record(env, job, result)["arguments"] == {"day": "2024-01-02", "n": 7}


def test_arguments_win_over_properties_set_in_an_earlier_run(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "props"
    job.mkdir()
    setter = write_notebook(
        job / "1_set.ipynb",
        [
            "job_input.set_all_properties({'day': 'from-properties', 'region': 'eu'})",
        ],
    )
    env.run("job", "run", str(job))

    setter.unlink()
    write_notebook(
        job / "2_use.ipynb",
        [
            "print('property day is', job_input.get_property('day'))",
            "%%sql\nCREATE TABLE t (day TEXT, region TEXT);\n"
            "INSERT INTO t VALUES ('{day}', '{region}')",
        ],
    )
    result = env.run("job", "run", str(job), "--arguments", '{"day": "from-arguments"}')

    assert "property day is from-properties" in output_lines(result.stdout)
    assert env.query("SELECT day, region FROM t") == [("from-arguments", "eu")]


def test_unknown_placeholders_stay_as_written(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "placeholders"
    job.mkdir()
    write_notebook(
        job / "1_sql.ipynb",
        [
            "%%sql\nCREATE TABLE t (a TEXT, b TEXT, c TEXT, d TEXT);\n"
            "INSERT INTO t VALUES ('{not_given}', '{n}', '{pa__job_name}', '{\"json\": 1}')",
        ],
    )

    env.run("job", "run", str(job), "--arguments", '{"n": 5}')

    assert env.query("SELECT a, b, c, d FROM t") == [
        ("{not_given}", "5", "placeholders", '{"json": 1}')
    ]


def test_bind_parameters_are_filled_by_the_driver(env: Env, tmp_path: Path) -> None:
    """``:name`` takes a value as data: a quote or a statement in it changes nothing."""
    job = tmp_path / "bound"
    job.mkdir()
    write_notebook(
        job / "1_sql.ipynb",
        [
            "job_input.set_all_properties({'region': 'eu'})",
            "%%sql\nCREATE TABLE people (name TEXT, region TEXT, note TEXT);\n"
            "INSERT INTO people VALUES (:name, :region, '10:30 :not_a_parameter') -- :nor_this",
            "print('found', job_input.execute_query(\n"
            "    'SELECT name, region FROM people WHERE name = :who', {'who': \"O'Brien\"}))",
        ],
    )
    (job / "2_file.sql").write_text("INSERT INTO people VALUES (:evil, :region, 'file');\n")
    evil = "x'); DROP TABLE people; --"

    result = env.run(
        "job", "run", str(job), "--arguments", json.dumps({"name": "O'Brien", "evil": evil})
    )

    assert sorted(env.query("SELECT name, region, note FROM people")) == [
        ("O'Brien", "eu", "10:30 :not_a_parameter"),
        (evil, "eu", "file"),
    ]
    assert "found [(\"O'Brien\", 'eu')]" in output_lines(result.stdout)


def test_skip_remaining_steps_in_a_cell_ends_the_run_successfully(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "skipping"
    job.mkdir()
    write_notebook(
        job / "1_nb.ipynb",
        [
            "print('first step ran')",
            "if True:\n    job_input.skip_remaining_steps()\nprint('rest of the cell ran')",
            "print('third step ran')\nraise RuntimeError('must not run')",
        ],
    )
    (job / "2_after.sql").write_text("CREATE TABLE never_created (x INTEGER);\n")
    write_notebook(job / "3_other.ipynb", ["print('other notebook ran')"])

    result = env.run("job", "run", str(job))

    lines = output_lines(result.stdout)
    assert "first step ran" in lines
    assert "rest of the cell ran" in lines
    assert "third step ran" not in lines
    assert "other notebook ran" not in lines
    with pytest.raises(Exception, match="never_created"):
        env.query("SELECT x FROM never_created")
    run = run_record(env, job, result)
    assert run["status"] == "succeeded"
    assert run["error"] is None
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("1_nb.ipynb#1", "succeeded"),
        ("1_nb.ipynb#2", "succeeded"),
        ("1_nb.ipynb#3", "skipped"),
        ("2_after.sql", "skipped"),
        ("3_other.ipynb#1", "skipped"),
    ]
    for step in run["steps"][2:]:
        assert "skip_remaining_steps()" in step["reason"]
        assert "step 2" in step["reason"]


def test_step_output_is_shown_while_the_step_runs(env: Env, tmp_path: Path) -> None:
    """The step waits for a file the test creates only after it saw the step's first line."""
    job = tmp_path / "live"
    job.mkdir()
    write_notebook(
        job / "1_live.ipynb",
        [
            "import pathlib, time\n"
            "print('waiting for go')\n"
            "deadline = time.monotonic() + 20\n"
            "while not pathlib.Path('go').exists():\n"
            "    if time.monotonic() > deadline:\n"
            "        raise RuntimeError('never released')\n"
            "    time.sleep(0.02)\n"
            "print('released')",
        ],
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "nbplane", "job", "run", str(job)],
        env=env.variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 25
            while not any("waiting for go" in line for line in seen):
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                assert line is not None, f"output ended before the step's line:\n{''.join(seen)}"
                seen.append(line)
            assert process.poll() is None
            assert not any(line.startswith("✓") for line in seen)
            (job / "go").touch()
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(timeout=10)
    while (line := lines.get(timeout=1)) is not None:
        seen.append(line)
    assert "released" in output_lines("".join(seen))
