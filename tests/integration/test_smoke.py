from pathlib import Path

from tests.conftest import Env, write_notebook


def test_runs_a_notebook_job_and_ingests(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "smoke"
    job.mkdir()
    write_notebook(
        job / "10_a.ipynb",
        [
            "%%sql\nCREATE TABLE t (x INTEGER);\nINSERT INTO t VALUES (1)",
            "rows = job_input.execute_query('SELECT x FROM t')\nprint('rows', rows)",
            "job_input.send_object_for_ingestion({'x': 2, 'y': 'b'}, destination_table='t')",
        ],
    )
    result = env.run("job", "run", str(job))
    assert "rows [(1,)]" in result.stdout
    assert sorted(env.query("SELECT x, y FROM t")) == [(1, None), (2, "b")]
