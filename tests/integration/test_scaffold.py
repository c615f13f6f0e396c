"""``job create`` and ``job export`` through the real CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests.conftest import Env


def step_output(stdout: str) -> list[str]:
    return [line.split("| ", 1)[1] for line in stdout.splitlines() if line.startswith("  | ")]


def test_created_job_runs(env: Env, tmp_path: Path) -> None:
    result = env.run("job", "create", "hello-job", "--team", "growth", "--directory", str(tmp_path))
    job = tmp_path / "hello-job"
    assert str(job) in result.stdout
    assert (job / "config.ini").is_file()
    assert "team = growth" in (job / "config.ini").read_text(encoding="utf-8")
    notebooks = list(job.glob("*.ipynb"))
    assert notebooks

    first = env.run("job", "run", str(job))
    assert "hello, world" in step_output(first.stdout)
    assert [row[0] for row in env.query("SELECT who FROM greetings")] == ["world"]

    second = env.run("job", "run", str(job), "--arguments", '{"who": "x"}')
    assert "hello, x" in step_output(second.stdout)
    assert [row[0] for row in env.query("SELECT who FROM greetings")] == ["x"]

    records = json.loads(env.run("job", "runs", str(job), "--output", "json").stdout)
    assert [r["status"] for r in records] == ["succeeded", "succeeded"]
    assert records[0]["job_team"] == "growth"
    assert records[0]["arguments"] == {"who": "x"}


def test_create_without_team_uses_the_default_team(env: Env, tmp_path: Path) -> None:
    env.run("job", "create", "plain", "--directory", str(tmp_path / "nested" / "jobs"))
    job = tmp_path / "nested" / "jobs" / "plain"
    env.run("job", "run", str(job))
    records = json.loads(env.run("job", "runs", str(job), "--output", "json").stdout)
    assert records[0]["job_team"] == "default"


def test_create_over_an_existing_directory_is_exit_2(env: Env, tmp_path: Path) -> None:
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine", encoding="utf-8")
    result = env.run("job", "create", "taken", "--directory", str(tmp_path), check=2)
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    "name", ["bad name", "../escape", "a/b", "_hidden", "x" * 64, "naïve?", "trailing-newline\n"]
)
def test_create_with_a_bad_name_is_exit_2(env: Env, tmp_path: Path, name: str) -> None:
    parent = tmp_path / "jobs"
    parent.mkdir()
    result = env.run("job", "create", name, "--directory", str(parent), check=2)
    assert "job name" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(parent.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def add_outputs(path: Path) -> None:
    """Give every code cell outputs and an execution count, as a saved Jupyter session would."""
    notebook = nbformat.read(path, as_version=4)
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code":
            cell.execution_count = number
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=f"OLD-OUTPUT-{number}\n")
            ]
            cell.metadata["execution"] = {"iopub.status.idle": "2024-01-01T00:00:00Z"}
    nbformat.write(notebook, path)


def test_export_clears_outputs_excludes_junk_and_runs_unzipped(env: Env, tmp_path: Path) -> None:
    env.run("job", "create", "shipme", "--directory", str(tmp_path))
    job = tmp_path / "shipme"
    (notebook,) = job.glob("*.ipynb")
    add_outputs(notebook)
    (job / "20_more.sql").write_text("SELECT count(*) AS n FROM greetings", encoding="utf-8")
    (job / "helpers").mkdir()
    (job / "helpers" / "util.py").write_text("VALUE = 1\n", encoding="utf-8")
    (job / ".ipynb_checkpoints").mkdir()
    (job / ".ipynb_checkpoints" / f"{notebook.stem}-checkpoint.ipynb").write_text(
        notebook.read_text(encoding="utf-8"), encoding="utf-8"
    )
    (job / "__pycache__").mkdir()
    (job / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0junk")
    (job / "helpers" / "__pycache__").mkdir()
    (job / "helpers" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0junk")
    template = job / "templates" / "sub"
    template.mkdir(parents=True)
    (template / "10_sub.ipynb").write_text(notebook.read_text(encoding="utf-8"), encoding="utf-8")
    (template / ".ipynb_checkpoints").mkdir()
    (template / ".ipynb_checkpoints" / "10_sub-checkpoint.ipynb").write_text("{}", encoding="utf-8")
    (job / ".nbplane").mkdir()
    (job / ".nbplane" / "state.json").write_text("{}", encoding="utf-8")
    env.run("job", "run", str(job))  # running leaves the job's files as they were

    archive = tmp_path / "dist" / "shipme.zip"
    archive.parent.mkdir()
    result = env.run("job", "export", str(job), "--to", str(archive))
    assert f"wrote {archive}" in result.stdout
    with zipfile.ZipFile(archive) as opened:
        names = sorted(opened.namelist())
        assert names == sorted(
            [
                "config.ini",
                notebook.name,
                "20_more.sql",
                "helpers/util.py",
                "templates/sub/10_sub.ipynb",
            ]
        )
        assert f"({len(names)} files)" in result.stdout
        exported = nbformat.reads(opened.read(notebook.name).decode(), as_version=4)
        in_template = nbformat.reads(
            opened.read("templates/sub/10_sub.ipynb").decode(), as_version=4
        )
    code_cells = [c for c in exported.cells if c.cell_type == "code"]
    assert code_cells
    for cleared in (exported, in_template):
        cells = [c for c in cleared.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in cells)
        assert all("execution" not in c.metadata for c in cleared.cells)
        assert "OLD-OUTPUT" not in json.dumps(cleared)
    # the tags that make cells steps survive
    assert sum("step" in c.metadata.get("tags", []) for c in code_cells) == 3
    # the original notebook keeps its outputs
    assert "OLD-OUTPUT-2" in notebook.read_text(encoding="utf-8")

    unpacked = tmp_path / "unpacked" / "shipme"
    unpacked.mkdir(parents=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(unpacked)
    ran = env.run("job", "run", str(unpacked), "--arguments", '{"who": "unzipped"}')
    assert "hello, unzipped" in step_output(ran.stdout)
    assert [row[0] for row in env.query("SELECT who FROM greetings")] == ["unzipped"]


def test_export_into_the_job_directory_leaves_the_archive_out(env: Env, tmp_path: Path) -> None:
    env.run("job", "create", "selfref", "--directory", str(tmp_path))
    job = tmp_path / "selfref"
    archive = job / "selfref.zip"
    env.run("job", "export", str(job), "--to", str(archive))
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert "selfref.zip" not in names
    assert "config.ini" in names


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_exporting_a_non_job_is_exit_2(env: Env, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "notajob"
    if kind == "empty":
        target.mkdir()
        (target / "README.md").write_text("nothing to run", encoding="utf-8")
    elif kind == "file":
        target.write_text("x", encoding="utf-8")
    archive = tmp_path / "out.zip"
    result = env.run("job", "export", str(target), "--to", str(archive), check=2)
    expected = "no steps found" if kind == "empty" else "not a directory"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not archive.exists()


def test_to_notebook_writes_a_job_that_runs_and_refuses_by_file(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "vdk-job"
    job.mkdir()
    (job / "10_create.sql").write_text("CREATE TABLE seen (n INT)", encoding="utf-8")
    (job / "20_fill.py").write_text(
        "def run(job_input):\n    job_input.execute_query('INSERT INTO seen VALUES (7)')\n",
        encoding="utf-8",
    )
    answer = json.loads(env.run("job", "to-notebook", str(job), "-o", "json").stdout)
    assert answer["steps"] == ["10_create.sql", "20_fill.py"]
    assert answer["notebook"] == str(tmp_path / "vdk-job-notebook" / "vdk-job.ipynb")
    env.run("job", "run", str(tmp_path / "vdk-job-notebook"))
    assert [row[0] for row in env.query("SELECT n FROM seen")] == [7]

    (job / "30_bad.py").write_text("async def run(job_input):\n    pass\n", encoding="utf-8")
    refused = env.run("job", "to-notebook", str(job), "--to", str(tmp_path / "b.ipynb"), check=2)
    assert "30_bad.py" in refused.stderr and "async" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "b.ipynb").exists()
