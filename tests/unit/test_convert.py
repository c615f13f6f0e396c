"""``job to-notebook``'s conversion in-process: steps in run order, SQL cells, refusals; and a
new job made from an existing notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from nbplane.errors import ConfigError, JobDefinitionError
from nbplane.jobs.convert import convert_job
from nbplane.jobs.definition import StepKind, load_job
from nbplane.jobs.scaffold import create_job


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_py_and_sql_steps_become_step_cells_in_run_order(tmp_path: Path) -> None:
    job = write(
        tmp_path / "sales",
        {
            "config.ini": "[owner]\nteam = analytics\n",
            "10_load.py": "import os\n\ndef run(job_input):\n    print('load')\n",
            "2_create.sql": "CREATE TABLE t (x INT);\n",
            "30_check.py": "def run(job_input, days=7):\n    pass\n",
            "notes.txt": "not a step",
        },
    )
    converted = convert_job(job)
    assert converted.notebook == tmp_path / "sales-notebook" / "sales.ipynb"
    assert converted.steps == ["2_create.sql", "10_load.py", "30_check.py"], "2 before 10"
    assert converted.copied == ["config.ini"]
    notebook = nbformat.read(converted.notebook, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.metadata["tags"] for cell in code] == [["step"]] * 3
    assert code[0].source == "%%sql\nCREATE TABLE t (x INT);"
    assert code[1].source.startswith("import os") and code[1].source.endswith("run(job_input)")
    headings = [cell.source for cell in notebook.cells if cell.source.startswith("## Step")]
    assert headings == [
        "## Step 1: `2_create.sql`",
        "## Step 2: `10_load.py`",
        "## Step 3: `30_check.py`",
    ]

    again = load_job(converted.notebook.parent)
    assert [step.kind for step in again.steps] == [
        StepKind.SQL_CELL,
        StepKind.PYTHON_CELL,
        StepKind.PYTHON_CELL,
    ]
    assert again.config.team == "analytics"
    assert sorted(p.name for p in job.iterdir()) == [
        "10_load.py",
        "2_create.sql",
        "30_check.py",
        "config.ini",
        "notes.txt",
    ], "the job itself is left as it was"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("async def run(job_input):\n    pass\n", "async"),
        ("def run(job_input, table):\n    pass\n", "exactly one argument"),
        ("def run():\n    pass\n", "exactly one argument"),
        ("def run(job_input, *, table):\n    pass\n", "exactly one argument"),
    ],
)
def test_a_step_that_would_not_run_the_same_is_refused_by_file(
    tmp_path: Path, source: str, words: str
) -> None:
    job = write(tmp_path / "odd", {"10_ok.sql": "SELECT 1", "20_odd.py": source})
    with pytest.raises(JobDefinitionError) as refused:
        convert_job(job)
    assert refused.value.fields["file"] == "20_odd.py"
    assert "20_odd.py" in refused.value.message and words in refused.value.message
    assert not (tmp_path / "odd-notebook").exists()


def test_the_notebook_goes_nowhere_it_would_break(tmp_path: Path) -> None:
    job = write(tmp_path / "j", {"10_a.sql": "SELECT 1"})
    for to, words in [
        (job / "j.ipynb", "run twice"),
        (tmp_path / "out.txt", ".ipynb"),
    ]:
        with pytest.raises(ConfigError, match=words) as refused:
            convert_job(job, to)
        assert refused.value.fields["field"] == "to"
    convert_job(job, tmp_path / "mine" / "x.ipynb")
    with pytest.raises(ConfigError, match="exists already"):
        convert_job(job, tmp_path / "mine" / "x.ipynb")


def test_a_job_from_a_notebook_gets_its_code_cells_as_steps(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# explore"),
        nbformat.v4.new_code_cell("x = 1", outputs=[], execution_count=3),
        nbformat.v4.new_code_cell("print(x)"),
    ]
    nbformat.write(notebook, tmp_path / "explore.ipynb")
    job = load_job(
        create_job("explore-job", team="t", parent=tmp_path, notebook=tmp_path / "explore.ipynb")
    )
    assert [step.name for step in job.steps] == ["explore.ipynb#2", "explore.ipynb#3"]
    assert job.config.team == "t"

    tagged = nbformat.v4.new_notebook()
    tagged.cells = [
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["step"]}),
        nbformat.v4.new_code_cell("scratch"),
    ]
    nbformat.write(tagged, tmp_path / "tagged.ipynb")
    job = load_job(create_job("t2", team=None, parent=tmp_path, notebook=tmp_path / "tagged.ipynb"))
    assert [step.name for step in job.steps] == ["tagged.ipynb#1"], "its own steps are kept"

    (tmp_path / "empty.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    with pytest.raises(ConfigError, match="no code cell") as refused:
        create_job("t3", team=None, parent=tmp_path, notebook=tmp_path / "empty.ipynb")
    assert refused.value.fields["field"] == "notebook" and not (tmp_path / "t3").exists()
