"""The block that opens a failed execution's page: what failed, where and why, from an API
execution's record or a job run's, in words people read (cells counted as JupyterLab does)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import nbformat
import pytest

from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.apis.service import execution_failure
from nbplane.jobs.history import run_failure
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.notebooks.pages import Failure, failure_block, notebook_page

NOW = datetime(2026, 12, 7, tzinfo=UTC)
CELLS = [{"id": "params"}, {"id": "injected-parameters"}, {"id": "c-3"}]


def execution(status: ExecutionStatus, **fields: Any) -> DescribeExecution:
    return DescribeExecution(
        id="e1",
        notebook="double",
        notebook_version="v1",
        parameters={},
        status=status,
        engine="isolated",
        timeout=2,
        retries=0,
        attempts=1,
        created_at=NOW,
        **fields,
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (execution(ExecutionStatus.COMPLETED), None),
        (execution(ExecutionStatus.RUNNING), None),
        (
            execution(
                ExecutionStatus.FAILED,
                reason="exception in cell 3: ValueError: bad",
                error={"reason": "exception", "cell": 2, "ename": "ValueError", "evalue": "bad"},
            ),
            Failure("Failed", "cell 3 of 3", "ValueError: bad", cell_id="c-3"),
        ),
        (
            execution(
                ExecutionStatus.FAILED,
                reason="output schema: /y: 'a' is not of type 'number'",
                has_output=True,
                error={
                    "error": "InvalidOutput",
                    "field": "output",
                    "errors": [
                        {"pointer": "/y", "message": "'a' is not of type 'number'"},
                        {"pointer": "", "message": "'z' is a required property"},
                    ],
                },
            ),
            Failure(
                "Output schema violated",
                error="the output the notebook saved does not match the contract's output schema",
                details=("/y: 'a' is not of type 'number'", "(root): 'z' is a required property"),
            ),
        ),
        (
            execution(
                ExecutionStatus.FAILED,
                reason="output schema: no output was saved",
                error={"error": "InvalidOutput", "errors": []},
            ),
            Failure(
                "Output schema violated",
                error="no output was saved: call nbplane.save_output(...) in the notebook",
            ),
        ),
        (
            execution(
                ExecutionStatus.TIMED_OUT,
                reason="the execution did not finish within 2 s (cell 3 was running)",
                error={"reason": "timeout", "cell": 2},
            ),
            Failure(
                "Timed out",
                "cell 3 of 3",
                "the execution did not finish within 2 s (cell 3 was running)",
                cell_id="c-3",
            ),
        ),
        (
            execution(ExecutionStatus.CANCELLED, reason="cancelled", error={"cell": None}),
            Failure("Cancelled", None, "cancelled"),
        ),
        (
            execution(
                ExecutionStatus.FAILED,
                reason="the worker stopped while the execution ran",
                error={"reason": "worker_stopped", "cell": 99},  # a cell the notebook lacks
            ),
            Failure("Failed", None, "the worker stopped while the execution ran"),
        ),
    ],
    ids=[
        "completed",
        "running",
        "exception",
        "schema",
        "no-output",
        "timeout",
        "cancelled",
        "worker",
    ],
)
def test_an_executions_failure_in_words(
    record: DescribeExecution, expected: Failure | None
) -> None:
    assert execution_failure(record, CELLS) == expected


def step(position: int, status: StepStatus, **fields: Any) -> DescribeRunStep:
    return DescribeRunStep(
        position=position,
        name=f"a.ipynb#{position + 1}",
        kind="python_cell",
        file="a.ipynb",
        cell_number=position + 1,
        cell_id=f"id-{position}",
        status=status,
        code_hash="h",
        chain_hash="h",
        **fields,
    )


def run(status: RunStatus, *steps: DescribeRunStep, **fields: Any) -> DescribeRun:
    return DescribeRun(
        id=1,
        number=1,
        job_name="j",
        job_team=None,
        job_dir="/j",
        status=status,
        started_at=NOW,
        db_url="sqlite://",
        steps=list(steps),
        **fields,
    )


def test_a_runs_failure_names_the_step_the_cell_and_the_line() -> None:
    failed = step(
        1,
        StepStatus.FAILED,
        error={"message": "step 2 failed at ...: KeyError: 'k'", "summary": "KeyError: 'k'"}
        | {"line": 4, "raised_in": "a.ipynb#1"},
    )
    assert run_failure(run(RunStatus.FAILED, step(0, StepStatus.SUCCEEDED), failed)) == Failure(
        "Failed",
        "step 2 (a.ipynb#2), a.ipynb cell 2; raised in a.ipynb#1, line 4",
        "KeyError: 'k'",
        cell_id="id-1",
    )
    assert run_failure(run(RunStatus.SUCCEEDED, step(0, StepStatus.SUCCEEDED))) is None
    lost = run_failure(run(RunStatus.RUNNING, failed))  # its process ended without a word
    assert lost is not None and lost.where is not None and lost.where.startswith("step 2")
    assert run_failure(run(RunStatus.RUNNING, step(0, StepStatus.SUCCEEDED))) is None
    interrupted = run(RunStatus.CANCELLED, error={"message": "interrupted (Ctrl-C)"})
    assert run_failure(interrupted) == Failure("Cancelled", error="interrupted (Ctrl-C)")


def test_the_page_opens_with_the_block_and_a_completed_one_has_none() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("1 + 1", id="c-3"))
    page = notebook_page(notebook, Failure("Failed", "cell 1 of 1", "E: x", cell_id="c-3"), "t")
    body = page[page.index("<main>") :]
    assert body.startswith('<main><div class="nbplane-failure" role="alert"')
    assert '<a href="#cell-id=c-3" style="' in body and '">cell 1 of 1</a>' in body
    assert '<style>[id="cell-id=c-3"]{outline:2px solid #c62828' in body
    assert 'id="cell-id=c-3"' in body
    assert "<title>t</title>" in page
    assert "nbplane-failure" not in notebook_page(notebook, None)


def test_the_block_lists_schema_violations() -> None:
    block = failure_block(Failure("Output schema violated", error="e", details=("/y: bad", "/z")))
    assert "<ul style='margin:6px 0 0'><li><code>/y: bad</code></li><li><code>/z</code>" in block
