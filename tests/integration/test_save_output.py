"""Injected parameters and ``save_output`` on a real ipykernel."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from nbplane.apis.output import OUTPUT_MIMETYPE
from nbplane.apis.parameters import parameters_source

SHAPES = """
from pydantic import BaseModel

class Point(BaseModel):
    x: int
    y: int = 0
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[BlockingKernelClient]:
    (tmp_path / "shapes.py").write_text(SHAPES, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    manager, client = start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": path}
    )
    process = manager.provisioner.process
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        # reaped here: jupyter_client drops a kernel it could not reap in time (a loaded
        # machine), and the process then warns when collected, in whatever test runs next
        process.wait(timeout=60)


def run(client: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The execute reply's content and the display data the cell published."""
    displayed: list[dict[str, Any]] = []

    def hook(message: dict[str, Any]) -> None:
        if message["msg_type"] == "display_data":
            displayed.append(message["content"]["data"])

    reply = client.execute_interactive(code, output_hook=hook, timeout=60)
    return reply["content"], displayed


def test_parameters_and_output_round_trip_through_a_kernel(
    kernel: BlockingKernelClient,
) -> None:
    nasty = "'); import os; ('"
    source = parameters_source(
        {"customer_name": nasty, "point": {"x": 1, "y": 2}, "points": [{"x": 3}], "n": None},
        {"point": "point", "points": "point[]"},
        {"point": "shapes:Point"},
    )
    reply, _ = run(kernel, source)
    assert reply["status"] == "ok", reply
    reply, displayed = run(
        kernel,
        (
            "from nbplane import save_output\n"
            "save_output({'name': customer_name, 'point': point, 'n': n,\n"
            "             'kinds': [type(point).__name__, type(points[0]).__name__],\n"
            "             'leaked': [k for k in ('os', '__nbplane_bind') if k in globals()]})"
        ),
    )
    assert reply["status"] == "ok", reply
    (data,) = displayed
    assert data[OUTPUT_MIMETYPE] == {
        "name": nasty,
        "point": {"x": 1, "y": 2},
        "n": None,
        "kinds": ["Point", "Point"],
        "leaked": [],
    }
    assert '"name"' in data["text/plain"]  # the executed notebook shows the output too


def test_unserializable_output_fails_the_cell(kernel: BlockingKernelClient) -> None:
    reply, displayed = run(kernel, "import nbplane\nnbplane.save_output({'rows': [object()]})")
    assert reply["status"] == "error" and reply["ename"] == "TypeError"
    assert "object at /rows/0 is not JSON-serializable" in reply["evalue"]
    assert displayed == []
