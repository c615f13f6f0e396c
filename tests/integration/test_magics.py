"""The IPython extension in a real kernel: the notebook a user develops the job in."""

from __future__ import annotations

from pathlib import Path
from subprocess import Popen
from typing import Any

import nbformat
from nbclient import NotebookClient

from tests.conftest import Env, write_notebook


def execute(cells: list[str], cwd: Path, allow_errors: bool = False) -> list[Any]:
    """Run cells in a fresh ipykernel; returns the executed cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    processes: list[Popen[bytes]] = []
    client: NotebookClient = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
        on_notebook_start=lambda **_: processes.append(client.km.provisioner.process),
    )
    client.execute()
    for process in processes:  # reaped here: jupyter_client drops a kernel it could not reap in
        process.wait(timeout=60)  # time, which then warns when collected, in another test
    return list(notebook.cells)


def text_of(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


def test_job_binds_job_input_and_sql_returns_a_dataframe(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "dev"
    job.mkdir()
    (job / "config.ini").write_text("[owner]\nteam = growth\n")
    cells = execute(
        [
            "%load_ext nbplane",
            f"%job --path {job} --arguments '{{\"limit\": 2}}'",
            "%%sql\nCREATE TABLE n (v INTEGER);\nINSERT INTO n VALUES (1), (2), (3)",
            "%%sql\nSELECT v FROM n ORDER BY v LIMIT {limit}",
            "frame = _\ntype(frame).__name__, frame['v'].tolist()",
            "job_input.send_object_for_ingestion({'v': 10}, destination_table='n')",
            "%%vdksql\nSELECT max(v) AS top FROM n",
            "job_input.set_all_properties({'seen': 'yes'}); job_input.get_name()",
        ],
        cwd=tmp_path,
    )
    assert "job dev (team growth)" in text_of(cells[1])
    assert "('DataFrame', [1, 2])" in text_of(cells[4])
    assert "10" in text_of(cells[6]), "ingested rows are flushed when the cell ends"
    assert "'dev'" in text_of(cells[7])
    # The same job state is what a run sees.
    write_notebook(job / "10_check.ipynb", ["print('seen =', job_input.get_property('seen'))"])
    assert "seen = yes" in env.run("job", "run", str(job)).stdout


def test_sql_error_is_a_message_not_our_traceback(env: Env, tmp_path: Path) -> None:
    cells = execute(
        [
            "%load_ext nbplane",
            f"%job --path {tmp_path}",
            "%%sql\nSELECT * FROM no_such_table",
            "print('still alive')",
        ],
        cwd=tmp_path,
        allow_errors=True,
    )
    shown = text_of(cells[2])
    assert "no such table" in shown or "does not exist" in shown
    assert "nbplane/jobs" not in shown and "Traceback" not in shown
    assert text_of(cells[3]) == "still alive\n"


def test_job_run_streams_progress_from_the_notebook(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "nbjob"
    job.mkdir()
    write_notebook(job / "10_a.ipynb", ["print('from step one')", "x = 1\nprint('x is', x)"])
    cells = execute(
        ["%load_ext nbplane", f"%job_run --path {job}", f"%job_run --path {job} --resume"],
        cwd=tmp_path,
    )
    first, resumed = text_of(cells[1]), text_of(cells[2])
    assert "from step one" in first and "succeeded" in first
    assert "nothing changed" in resumed and "skipped" in resumed
