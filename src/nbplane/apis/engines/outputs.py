"""The outputs of a cell, built from the IOPub messages that answer it (nbformat's shapes).

What the notebook saves with ``save_output`` (:data:`~nbplane.apis.engines.base.OUTPUT_MIMETYPE`)
and what it prints are taken into the run as they arrive; displays are kept by id so an
``update_display_data`` reaches every output it names.
"""

from __future__ import annotations

from typing import Any

from nbplane.apis.engines.base import OUTPUT_MIMETYPE, Run


class CellOutputs:
    """Turns the IOPub messages answering one cell into that cell's outputs."""

    __slots__ = ("clear_pending", "last_error", "outputs", "run")

    def __init__(self, run: Run, cell: dict[str, Any]) -> None:
        self.run = run
        self.outputs: list[dict[str, Any]] = cell.setdefault("outputs", [])
        self.clear_pending = False
        self.last_error: dict[str, Any] | None = None

    def take(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self.outputs.clear()
            return
        if kind == "update_display_data":
            _update_display(self.run, content)
            return
        output = _output(kind, content)
        if output is None:
            return
        if kind == "error":
            self.last_error = content
        if self.clear_pending:
            self.outputs.clear()
            self.clear_pending = False
        _add_output(self.run, self.outputs, output, content)


def _output(kind: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """The nbformat output for an IOPub message, or None for messages that are not outputs."""
    if kind == "stream":
        return {"output_type": "stream", "name": content["name"], "text": content["text"]}
    if kind == "display_data":
        return {
            "output_type": "display_data",
            "data": content.get("data", {}),
            "metadata": content.get("metadata", {}),
        }
    if kind == "execute_result":
        return {
            "output_type": "execute_result",
            "execution_count": content.get("execution_count"),
            "data": content.get("data", {}),
            "metadata": content.get("metadata", {}),
        }
    if kind == "error":
        return {
            "output_type": "error",
            "ename": content.get("ename", ""),
            "evalue": content.get("evalue", ""),
            "traceback": content.get("traceback", []),
        }
    return None


def _add_output(
    run: Run, outputs: list[dict[str, Any]], output: dict[str, Any], content: dict[str, Any]
) -> None:
    if output["output_type"] == "stream":
        run.logs.append(output["text"])
        last = outputs[-1] if outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == output["name"]:
            last["text"] += output["text"]
            return
    elif "data" in output:
        data = output["data"]
        if OUTPUT_MIMETYPE in data:
            run.output, run.has_output = data[OUTPUT_MIMETYPE], True
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            run.displays.setdefault(display_id, []).append(output)
    outputs.append(output)


def _update_display(run: Run, content: dict[str, Any]) -> None:
    display_id = (content.get("transient") or {}).get("display_id")
    for output in run.displays.get(display_id or "", []):
        output["data"] = content.get("data", {})
        output["metadata"] = content.get("metadata", {})
