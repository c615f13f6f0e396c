"""Run records: ``job runs``, ``job show-run`` (table, JSON, HTML) through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import Env, write_notebook


def make_job(tmp_path: Path, name: str = "recorded") -> Path:
    """A job that prints a marker, sleeps a little, and fails when asked to."""
    job = tmp_path / name
    job.mkdir()
    write_notebook(
        job / "10_main.ipynb",
        [
            "import time\nprint('MARKER-' + str(job_input.get_arguments().get('n', 0)))\n"
            "time.sleep(0.2)",
            "if job_input.get_arguments().get('fail'):\n    raise ValueError('boom-77')",
            "%%sql\nSELECT 'alpha' AS label, 1 AS num",
        ],
    )
    return job


def runs_json(env: Env, job: Path, *extra: str) -> list[dict[str, Any]]:
    return json.loads(env.run("job", "runs", str(job), "--output", "json", *extra).stdout)


def show_json(env: Env, job: Path, run_id: int) -> dict[str, Any]:
    return json.loads(env.run("job", "show-run", str(job), str(run_id), "--output", "json").stdout)


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a table as the CLI prints it piped (a header, then tab-separated
    cells), as lists of stripped cells."""
    rows = [line.split("\t") for line in stdout.splitlines() if "\t" in line]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def test_runs_lists_runs_newest_first_with_statuses(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job), "--arguments", '{"n": 1}')
    env.run("job", "run", str(job), "--arguments", '{"n": 2, "fail": true}', check=1)
    env.run("job", "run", str(job), "--arguments", '{"n": 3}')
    other = make_job(tmp_path, "other")
    env.run("job", "run", str(other))

    records = runs_json(env, job)
    assert [r["arguments"] for r in records] == [{"n": 3}, {"n": 2, "fail": True}, {"n": 1}]
    assert [r["status"] for r in records] == ["succeeded", "failed", "succeeded"]
    ids = [r["number"] for r in records]
    assert ids == [3, 2, 1], "numbered per job, newest first"
    assert [r["number"] for r in runs_json(env, other)] == [1], "another job counts from 1"
    assert len({r["id"] for r in records}) == 3
    assert all(r["job_name"] == "recorded" for r in records)
    assert all(r["finished_at"] is not None for r in records)
    assert records[1]["error"] and "boom-77" in records[1]["error"]["message"]
    assert [r["number"] for r in runs_json(env, job, "--limit", "2")] == ids[:2]

    table = env.run("job", "runs", str(job)).stdout
    rows = table_rows(table)
    assert [row[0] for row in rows] == [str(i) for i in ids]
    assert [row[2] for row in rows] == ["succeeded", "failed", "succeeded"]
    assert "1 succeeded" in rows[1][4] and "1 failed" in rows[1][4] and "1 not run" in rows[1][4]
    assert rows[0][4] == "3 succeeded"
    assert rows[1][5] == '{"n": 2, "fail": true}'
    assert all(re.fullmatch(r"\d+\.\d\ds", row[3]) for row in rows)


def test_runs_of_a_job_never_run_is_empty(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path, "fresh")
    assert runs_json(env, job) == []


def test_show_run_shows_steps_arguments_and_durations(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job), "--arguments", '{"n": 5, "day": "2024-01-01"}')
    (run_id,) = [r["number"] for r in runs_json(env, job)]

    record = show_json(env, job, run_id)
    assert record["number"] == run_id and record["id"]
    assert record["status"] == "succeeded"
    assert record["arguments"] == {"n": 5, "day": "2024-01-01"}
    assert record["error"] is None
    steps = record["steps"]
    assert [s["name"] for s in steps] == ["10_main.ipynb#1", "10_main.ipynb#2", "10_main.ipynb#3"]
    assert [s["kind"] for s in steps] == ["python-cell", "python-cell", "sql-cell"]
    assert [s["status"] for s in steps] == ["succeeded"] * 3
    assert steps[0]["duration"] >= 0.2
    assert all(s["duration"] is not None and s["duration"] >= 0 for s in steps)
    assert all(s["started_at"] for s in steps)

    shown = env.run("job", "show-run", str(job), str(run_id)).stdout
    assert f"run {run_id} of recorded · succeeded" in shown
    assert '{"n": 5, "day": "2024-01-01"}' in shown
    rows = table_rows(shown)
    assert [row[1] for row in rows] == [
        "10_main.ipynb cell 1",
        "10_main.ipynb cell 2",
        "10_main.ipynb cell 3",
    ]
    assert all("succeeded" in row[2] for row in rows)
    durations = [float(row[3].removesuffix("s")) for row in rows]
    assert durations[0] >= 0.2


def test_show_run_html_has_the_outputs_and_status(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    (job / "20_report.sql").write_text("SELECT 'beta' AS label, 2 AS num", encoding="utf-8")
    env.run("job", "run", str(job), "--arguments", '{"n": 42}')
    (run_id,) = [r["number"] for r in runs_json(env, job)]
    page = tmp_path / "out" / "run.html"
    page.parent.mkdir()
    result = env.run("job", "show-run", str(job), str(run_id), "--html", str(page))
    assert f"wrote {page}" in result.stdout
    html = page.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "MARKER-42" in html  # printed by a notebook cell
    assert re.search(r"<table>\s*<thead>\s*<tr>\s*<th>label</th>\s*<th>num</th>", html)
    assert "<td>alpha</td>" in html  # the SQL cell's result table
    assert "<td>beta</td>" in html  # the .sql file's result table
    assert re.search(rf"run {run_id}\b[^<]*succeeded", html)
    assert "20_report.sql" in html
    assert "nbplane-failure" not in html, "a run that succeeded has no failure block"


def test_show_run_html_of_a_failed_run_has_the_error(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job), "--arguments", '{"n": 9, "fail": true}', check=1)
    (run_id,) = [r["number"] for r in runs_json(env, job)]
    page = tmp_path / "failed.html"
    env.run("job", "show-run", str(job), str(run_id), "--html", str(page))
    html = page.read_text(encoding="utf-8")
    assert re.search(rf"run {run_id}\b[^<]*failed", html)
    assert "MARKER-9" in html
    assert "boom-77" in html
    assert "not run" in html
    body = html[html.index("<main>") :]
    assert body.startswith('<main><div class="nbplane-failure"'), "the page opens with the failure"
    block = body[: body.index("</div>")]
    assert re.search(
        r"<strong>Failed</strong> at <a href=\"#cell-id=[\w-]+\" style=\"[^\"]+\">"
        r"step 2 \(10_main\.ipynb#2\), 10_main\.ipynb cell 2, line 2</a>",
        block,
    ), block
    assert "ValueError: boom-77" in block


def test_unknown_run_id_is_exit_2(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    other = make_job(tmp_path, "other")
    env.run("job", "run", str(other))
    (other_id,) = [r["number"] for r in runs_json(env, other)]

    result = env.run("job", "show-run", str(job), "999", check=2)
    assert f"no run 999 of the job in {job}" in result.stderr
    assert "Traceback" not in result.stderr
    # a run of another job is not a run of this one
    result = env.run("job", "show-run", str(job), str(other_id), "--output", "json", check=2)
    assert f"no run {other_id} of the job in {job}" in result.stderr
    assert result.stdout == ""
    page = tmp_path / "nothing.html"
    env.run("job", "show-run", str(job), "999", "--html", str(page), check=2)
    assert not page.exists()


def test_a_failed_runs_record_has_the_error(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job), "--arguments", '{"fail": true}', check=1)
    (run_id,) = [r["number"] for r in runs_json(env, job)]
    record = show_json(env, job, run_id)
    assert record["status"] == "failed"
    error = record["error"]
    assert "ValueError: boom-77" in error["message"]
    assert "10_main.ipynb cell 2" in error["message"]
    assert error["line"] == 2
    assert error["exception"] == "ValueError"
    assert error["line_text"] == "raise ValueError('boom-77')"
    assert "boom-77" in error["traceback"]
    steps = record["steps"]
    assert [s["status"] for s in steps] == ["succeeded", "failed", "not run"]
    assert steps[1]["error"]["message"] == error["message"]
    assert "step 2 (10_main.ipynb#2) failed" in steps[2]["reason"]

    shown = env.run("job", "show-run", str(job), str(run_id)).stdout
    assert f"run {run_id} of recorded · failed" in shown
    assert "ValueError: boom-77" in shown


def test_a_failed_sql_step_records_the_statement_and_line(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "sqlfail"
    job.mkdir()
    (job / "10_load.sql").write_text(
        "CREATE TABLE ok_table (x INTEGER);\n\nSELECT *\n  FROM missing_table_zz", encoding="utf-8"
    )
    result = env.run("job", "run", str(job), check=1)
    assert "missing_table_zz" in result.stdout
    (run_id,) = [r["number"] for r in runs_json(env, job)]
    error = show_json(env, job, run_id)["error"]
    assert error["exception"] == "QueryError"
    assert error["file"] == "10_load.sql"
    assert error["line"] == 3
    assert "missing_table_zz" in error["statement"]
    assert "10_load.sql, line 3" in error["message"]


def test_a_failed_query_in_a_py_step_records_the_line_that_ran_it(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "pyfail"
    job.mkdir()
    (job / "10_load.py").write_text(
        "def run(job_input):\n"
        "    job_input.execute_query('SELECT 1')\n"
        "    job_input.execute_query('SELECT * FROM missing_from_py')\n",
        encoding="utf-8",
    )
    result = env.run("job", "run", str(job), check=1)
    assert "missing_from_py" in result.stdout
    (run_id,) = [r["number"] for r in runs_json(env, job)]
    error = show_json(env, job, run_id)["error"]
    assert error["file"] == "10_load.py"
    assert error["line"] == 3
    assert "missing_from_py" in error["line_text"]
    assert "10_load.py, line 3" in error["message"]
