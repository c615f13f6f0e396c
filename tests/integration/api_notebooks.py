"""Notebooks and contracts the server tests serve, and the fake engine timed as real ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat

from nbplane.apis.engines.base import Run, Stopper
from nbplane.testing import FakeEngine

NUMBER_IN = {
    "type": "object",
    "properties": {"x": {"type": "number"}},
    "required": ["x"],
    "additionalProperties": False,
}


def write_api(
    directory: Path,
    name: str,
    cells: list[str | tuple[str, list[str]]],
    contract: dict[str, Any] | str,
) -> None:
    """A notebook whose cells are sources (or (source, tags)) and its contract file."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(notebook, directory / f"{name}.ipynb")
    text = contract if isinstance(contract, str) else json.dumps(contract)
    (directory / f"{name}.config.json").write_text(text, encoding="utf-8")


def write_all(directory: Path) -> None:
    save = "from nbplane import save_output\n"
    write_api(
        directory,
        "double",
        [("x = 1", ["parameters"]), save + "save_output({'y': 2 * x})"],
        {
            "input": NUMBER_IN,
            "output": {
                "type": "object",
                "required": ["y"],
                "properties": {"y": {"type": "number"}},
            },
        },
    )
    echo = save + "save_output({'text': text, 'kind': type(text).__name__})"
    write_api(
        directory,
        "echo",
        [("text = ''", ["parameters"]), echo],
        {"input": {"type": "object", "properties": {"text": {"type": "string"}}}, "output": {}},
    )
    write_api(
        directory,
        "boom",
        [("x = 1", ["parameters"]), "y = 2", "raise ValueError(f'bad x {x}')"],
        {"input": NUMBER_IN, "output": {}},
    )
    write_api(
        directory,
        "die",
        [("x = 1", ["parameters"]), "import os\nos._exit(3)"],
        {"input": NUMBER_IN, "output": {}},
    )
    write_api(
        directory,
        "slow",
        [("seconds = 30", ["parameters"]), "import time\ntime.sleep(seconds)"],
        {
            "input": {"type": "object", "properties": {"seconds": {"type": "number"}}},
            "output": {},
            "timeout": 2,
        },
    )
    write_api(
        directory,
        "badout",
        [("x = 1", ["parameters"]), save + "save_output({'y': 'not a number'})"],
        {
            "input": NUMBER_IN,
            "output": {
                "type": "object",
                "required": ["y"],
                "properties": {"y": {"type": "number"}},
            },
        },
    )
    write_api(
        directory,
        "counter",
        [
            "calls = 0",
            ("x = 1\nlabel = 'default'", ["parameters"]),
            save + "calls += 1\nsave_output({'calls': calls, 'x': x, 'label': label})",
        ],
        {
            "input": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "label": {"type": "string"}},
                "required": ["x"],
            },
            "output": {},
            "engine": "reuse",
        },
    )
    write_api(directory, "broken", ["x = 1"], "{not json")


class TimedEngine(FakeEngine):
    """The fake engine, its time accounted to the phases real engines report."""

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        since = run.timed("engine_start", time.perf_counter())
        try:
            await super()._execute(run, stopper)
        finally:
            run.timed("capture", run.timed("cells", since))
