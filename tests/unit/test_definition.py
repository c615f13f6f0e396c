from pathlib import Path

import pytest

from nbplane.errors import JobDefinitionError
from nbplane.jobs.definition import load_job, natural_key
from nbplane.notebooks.reader import split_sql_cell
from tests.conftest import write_notebook


def test_natural_order() -> None:
    names = ["10_y.sql", "2_x.py", "1_a.ipynb", "b.sql", "a10.py", "a9.py"]
    assert sorted(names, key=natural_key) == [
        "1_a.ipynb",
        "2_x.py",
        "10_y.sql",
        "a9.py",
        "a10.py",
        "b.sql",
    ]


@pytest.mark.parametrize(
    ("source", "sql"),
    [
        ("%%sql\nSELECT 1", "SELECT 1"),
        ("\n%%vdksql\nSELECT 1", "SELECT 1"),
        ("%%sql  \nSELECT 1", "SELECT 1"),
        ("%%sqlx\nSELECT 1", None),
        ("print('%%sql')", None),
    ],
)
def test_sql_cells_are_recognised_by_their_first_line(source: str, sql: str | None) -> None:
    assert split_sql_cell(source) == sql


def test_steps_name_their_notebook_cell_and_id(tmp_path: Path) -> None:
    write_notebook(
        tmp_path / "a.ipynb",
        [("markdown", "# hi"), "x = 1", ("y = 2", []), ("%%sql\nSELECT 1", ["vdk"])],
    )
    steps = load_job(tmp_path).steps
    assert [s.name for s in steps] == ["a.ipynb#2", "a.ipynb#4"]
    assert steps[1].sql == "SELECT 1" and steps[1].sql_line_offset == 1
    assert all(s.cell_id for s in steps)


def test_find_step_by_name_id_or_number(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", ["x = 1", "y = 2"])
    (tmp_path / "b.sql").write_text("SELECT 1")
    job = load_job(tmp_path)
    assert job.find_step("b.sql").index == 2
    assert job.find_step("a.ipynb#2").index == 1
    assert job.find_step("2").index == 1
    assert job.find_step(str(job.steps[0].cell_id)).index == 0
    with pytest.raises(JobDefinitionError, match="no step named 'zzz'"):
        job.find_step("zzz")
