"""What a job directory is: which files and cells are steps, in which order, with which config,
and how nbplane refuses a directory that is not a job."""

from __future__ import annotations

import json
import re
import sqlite3
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


def step_lines(stdout: str) -> list[str]:
    """The ``▶ N/M label`` lines the CLI prints as each step starts, without the marker."""
    return [line[2:].strip() for line in stdout.splitlines() if line.startswith("▶ ")]


def log_step(name: str) -> str:
    """SQL (valid on SQLite and PostgreSQL) appending ``name`` to the ordered ``log`` table."""
    return f"INSERT INTO log (pos, name) SELECT COUNT(*) + 1, '{name}' FROM log"


# order


def test_files_run_in_natural_order_with_py_and_sql_interleaved(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "ordered"
    job.mkdir()
    (job / "1_setup.sql").write_text("CREATE TABLE log (pos INTEGER, name TEXT);\n")
    (job / "2_b.sql").write_text(log_step("2_b.sql") + ";\n")
    (job / "3_c.py").write_text(
        f'def run(job_input):\n    job_input.execute_query("{log_step("3_c.py")}")\n'
    )
    write_notebook(
        job / "10_a.ipynb",
        [
            f"%%sql\n{log_step('10_a.ipynb#1')}",
            f'job_input.execute_query("{log_step("10_a.ipynb#2")}")',
        ],
    )
    (job / "11_d.sql").write_text(log_step("11_d.sql") + ";\n")
    (job / "20_e.py").write_text(
        f'def run(job_input):\n    job_input.execute_query("{log_step("20_e.py")}")\n'
    )
    (job / "README.md").write_text("not a step\n")
    (job / "notes.txt").write_text("DROP TABLE log;\n")

    result = env.run("job", "run", str(job))

    expected = [
        "1_setup.sql",
        "2_b.sql",
        "3_c.py",
        "10_a.ipynb cell 1",
        "10_a.ipynb cell 2",
        "11_d.sql",
        "20_e.py",
    ]
    assert step_lines(result.stdout) == [
        f"{n}/7 {label}" for n, label in enumerate(expected, start=1)
    ]
    assert env.query("SELECT pos, name FROM log ORDER BY pos") == [
        (1, "2_b.sql"),
        (2, "3_c.py"),
        (3, "10_a.ipynb#1"),
        (4, "10_a.ipynb#2"),
        (5, "11_d.sql"),
        (6, "20_e.py"),
    ]
    run = run_record(env, job, result)
    assert [(s["position"], s["name"]) for s in run["steps"]] == [
        (0, "1_setup.sql"),
        (1, "2_b.sql"),
        (2, "3_c.py"),
        (3, "10_a.ipynb#1"),
        (4, "10_a.ipynb#2"),
        (5, "11_d.sql"),
        (6, "20_e.py"),
    ]
    assert [s["kind"] for s in run["steps"]] == [
        "sql-file",
        "sql-file",
        "python-file",
        "sql-cell",
        "python-cell",
        "sql-file",
        "python-file",
    ]


def test_twelve_plus_tagged_cells_run_in_notebook_order(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "many_cells"
    job.mkdir()
    cells = ["order = []"] + [f"order.append({n})" for n in range(2, 15)]
    cells.append("print('order', order)")
    write_notebook(job / "1_many.ipynb", cells)

    result = env.run("job", "run", str(job))

    assert f"order {list(range(2, 15))}" in result.stdout
    assert step_lines(result.stdout) == [f"{n}/15 1_many.ipynb cell {n}" for n in range(1, 16)]
    run = run_record(env, job, result)
    assert [s["cell_number"] for s in sorted(run["steps"], key=lambda s: s["position"])] == list(
        range(1, 16)
    )
    assert {s["status"] for s in run["steps"]} == {"succeeded"}


# which cells are steps


def test_vdk_tag_is_a_step_and_untagged_markdown_raw_cells_never_run(
    env: Env, tmp_path: Path
) -> None:
    job = tmp_path / "tags"
    job.mkdir()
    write_notebook(
        job / "1_cells.ipynb",
        [
            ("seen = ['step']", ["step"]),
            ("markdown", "print('markdown ran')"),
            ("raw", "raise SystemExit(3)"),
            ("print('untagged ran')\nraise RuntimeError('untagged ran')", []),
            ("print('parameters-only ran')", ["parameters"]),
            ("seen.append('vdk')\nprint('seen', seen)", ["vdk"]),
            ("seen.append('both')\nprint('seen', seen)", ["parameters", "vdk", "step"]),
        ],
    )

    result = env.run("job", "run", str(job))

    out = result.stdout + result.stderr
    assert "seen ['step', 'vdk']" in out
    assert "seen ['step', 'vdk', 'both']" in out
    for text in ("markdown ran", "untagged ran", "parameters-only ran"):
        assert text not in out
    run = run_record(env, job, result)
    assert run["status"] == "succeeded"
    assert [s["cell_number"] for s in run["steps"]] == [1, 6, 7]


# namespaces


def test_notebooks_are_isolated_but_steps_of_one_notebook_share_a_namespace(
    env: Env, tmp_path: Path
) -> None:
    job = tmp_path / "namespaces"
    job.mkdir()
    write_notebook(
        job / "1_first.ipynb",
        [
            "counter = 41\nimport math",
            "counter += 1\nprint('first sees', counter, math.floor(2.5))",
        ],
    )
    write_notebook(
        job / "2_second.ipynb",
        [
            "print('second has counter:', 'counter' in globals())\n"
            "print('second has math:', 'math' in globals())\n"
            "print('second has job_input:', type(job_input).__name__)",
            "counter = 'mine'",
        ],
    )
    write_notebook(
        job / "3_third.ipynb",
        [
            "try:\n    counter\nexcept NameError:\n    print('third: NameError')\n"
            "print('third job_input:', job_input.get_name())",
        ],
    )

    result = env.run("job", "run", str(job))

    assert "first sees 42 2" in result.stdout
    assert "second has counter: False" in result.stdout
    assert "second has math: False" in result.stdout
    assert "second has job_input: JobInput" in result.stdout
    assert "third: NameError" in result.stdout
    assert "third job_input: namespaces" in result.stdout


# .py steps


def test_python_file_step_gets_job_input(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "pyjob"
    job.mkdir()
    (job / "1_load.py").write_text(
        "LOADED_AT_IMPORT = 'module level ran'\n"
        "\n"
        "def run(job_input):\n"
        "    print(LOADED_AT_IMPORT)\n"
        "    n = job_input.get_arguments()['n']\n"
        "    job_input.execute_query('CREATE TABLE numbers (n INTEGER)')\n"
        "    job_input.send_tabular_data_for_ingestion(\n"
        "        [(i,) for i in range(n)], column_names=['n'], destination_table='numbers')\n"
        "    print('job', job_input.get_name(), 'n', n)\n"
    )
    (job / "2_check.py").write_text(
        "def run(job_input):\n"
        "    print('total', job_input.execute_query('SELECT SUM(n) FROM numbers')[0][0])\n"
    )

    result = env.run("job", "run", str(job), "--arguments", '{"n": 4}')

    assert "module level ran" in result.stdout
    assert "job pyjob n 4" in result.stdout
    assert "total 6" in result.stdout
    assert sorted(env.query("SELECT n FROM numbers")) == [(0,), (1,), (2,), (3,)]


# config.ini and job.toml


def test_config_ini_owner_team_is_the_job_team(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "vdkjob"
    job.mkdir()
    (job / "config.ini").write_text(
        "; a VDK data job config\n[owner]\nteam = data-eng\n\n[job]\nschedule_cron = 11 23 5 8 1\n"
    )
    write_notebook(
        job / "1_a.ipynb",
        [
            "print('team is', job_input.get_execution_properties()['pa__team_name'])",
            "%%sql\nCREATE TABLE who (team TEXT);\nINSERT INTO who VALUES ('{pa__team_name}')",
        ],
    )

    result = env.run("job", "run", str(job))

    assert "team is data-eng" in result.stdout
    assert env.query("SELECT team FROM who") == [("data-eng",)]
    assert run_record(env, job, result)["job_team"] == "data-eng"


def test_job_toml_settings_are_used_and_win_over_config_ini(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "tomljob"
    job.mkdir()
    toml_db = tmp_path / "from_toml.sqlite"
    (job / "config.ini").write_text("[owner]\nteam = ini-team\n")
    (job / "job.toml").write_text(
        "[job]\n"
        'name = "nightly"\n'
        'team = "toml-team"\n'
        'description = "Loads the nightly numbers"\n'
        f'db = "sqlite:///{toml_db}"\n'
    )
    write_notebook(
        job / "1_a.ipynb",
        [
            "print('name', job_input.get_name(), 'team',\n"
            "      job_input.get_execution_properties()['pa__team_name'])",
            "%%sql\nCREATE TABLE landed (x INTEGER);\nINSERT INTO landed VALUES (7)",
        ],
    )

    result = env.run("job", "run", str(job))

    assert "name nightly team toml-team" in result.stdout
    assert f"database sqlite:///{toml_db}" in result.stdout
    with sqlite3.connect(toml_db) as connection:
        assert connection.execute("SELECT x FROM landed").fetchall() == [(7,)]
    with pytest.raises(Exception, match="landed"):
        env.query("SELECT x FROM landed")  # not in the environment's database
    run = run_record(env, job, result)
    assert (run["job_name"], run["job_team"]) == ("nightly", "toml-team")
    assert run["db_url"] == f"sqlite:///{toml_db}"

    # --db on the command line wins over job.toml
    env.run("job", "run", str(job), "--db", env.db_url)
    assert env.query("SELECT x FROM landed") == [(7,)]


def test_unknown_job_toml_key_is_not_a_job(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "badtoml"
    job.mkdir()
    (job / "job.toml").write_text('[job]\nname = "x"\nschedule = "daily"\n')
    (job / "1_a.sql").write_text("CREATE TABLE should_not_exist (x INTEGER);\n")

    result = env.run("job", "run", str(job), check=2)

    assert "schedule" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    with pytest.raises(Exception, match="should_not_exist"):
        env.query("SELECT x FROM should_not_exist")


def test_unknown_job_toml_key_message_shows_the_full_setting_name(env: Env, tmp_path: Path) -> None:
    """The message names the setting as ``[job].schedule``, as written in job.toml."""
    job = tmp_path / "badtoml"
    job.mkdir()
    (job / "job.toml").write_text('[job]\nschedule = "daily"\n')
    (job / "1_a.sql").write_text("SELECT 1;\n")

    result = env.run("job", "run", str(job), check=2)

    assert "unknown setting [job].schedule" in result.stderr


# not a job

NOTEBOOK_CELL: dict[str, Any] = {
    "cell_type": "code",
    "id": "c1",
    "source": "print('ran')",
    "metadata": {"tags": ["step"]},
    "outputs": [],
    "execution_count": None,
}


def _write(files: dict[str, str]) -> Any:
    def make(job: Path) -> None:
        for name, text in files.items():
            (job / name).write_text(text)

    return make


NOT_A_JOB = {
    "empty directory": (_write({}), [], ["no steps found"]),
    "only untagged cells and other files": (
        lambda job: (
            write_notebook(job / "1_a.ipynb", [("print('x')", []), ("markdown", "m")]),
            (job / "notes.txt").write_text("x"),
        ),
        [],
        ["no steps found", "tagged 'step'"],
    ),
    "invalid JSON notebook": (
        _write({"2_ok.sql": "SELECT 1;\n", "10_broken.ipynb": '{"cells": [\n'}),
        [],
        ["10_broken.ipynb", "JSON", "line 2"],
    ),
    "notebook without nbformat keys": (
        _write(
            {
                "1_nb.ipynb": json.dumps({"cells": [NOTEBOOK_CELL], "metadata": {}}),
                "2_ok.sql": "SELECT 1;\n",
            }
        ),
        [],
        ["1_nb.ipynb", "nbformat"],
    ),
    "notebook without cells": (
        _write({"1_nb.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}})}),
        [],
        ["1_nb.ipynb", "cells"],
    ),
    "notebook cell without source": (
        _write(
            {
                "1_nb.ipynb": json.dumps(
                    {
                        "nbformat": 4,
                        "nbformat_minor": 5,
                        "metadata": {},
                        "cells": [{k: v for k, v in NOTEBOOK_CELL.items() if k != "source"}],
                    }
                )
            }
        ),
        [],
        ["1_nb.ipynb", "source"],
    ),
    ".py without run": (
        _write(
            {
                "1_ok.sql": "SELECT 1;\n",
                "2_step.py": "def main(job_input):\n    pass\n\nclass X:\n"
                "    def run(self, job_input):\n        pass\n",
            }
        ),
        [],
        ["2_step.py", "run(job_input)"],
    ),
    ".py with a syntax error": (
        _write({"3_step.py": "x = 1\n\ndef run(job_input)\n    pass\n"}),
        [],
        ["3_step.py", "line 3", "syntax error"],
    ),
    "arguments not an object": (
        _write({"1_ok.sql": "SELECT 1;\n"}),
        ["--arguments", "[1]"],
        ["--arguments", "JSON object", "list"],
    ),
    "arguments not JSON": (
        _write({"1_ok.sql": "SELECT 1;\n"}),
        ["--arguments", "{bad"],
        ["--arguments", "not valid JSON"],
    ),
}


@pytest.mark.parametrize("case", list(NOT_A_JOB))
def test_not_a_job_exits_2_with_a_clear_message(env: Env, tmp_path: Path, case: str) -> None:
    make, extra, expected = NOT_A_JOB[case]
    job = tmp_path / "job"
    job.mkdir()
    make(job)

    result = env.run("job", "run", str(job), *extra, check=2)

    assert result.stderr.strip().startswith("error:"), result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} not in stderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    assert "▶" not in result.stdout  # no step started
    assert json.loads(env.run("job", "runs", str(job), "--output", "json").stdout) == []


def test_nonexistent_directory_exits_2(env: Env, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_job"

    result = env.run("job", "run", str(missing), check=2)

    assert "no_such_job" in result.stderr
    assert "not a directory" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
