"""Collect a step's outputs as nbformat outputs while streaming its text live."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TextListener = Callable[[str, str], None]
"""Called with (stream name, text) as a step writes."""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class OutputCollector:
    """One step's outputs, in the shape nbformat stores them in a code cell. A result's
    execution count is the step's number, as the executed notebook's cell prompt says
    (``[3]:`` is step 3), not the count of the notebook's shell."""

    def __init__(
        self, listener: TextListener, redact: Callable[[str], str], execution_count: int
    ) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._listener = listener
        self._redact = redact
        self._execution_count = execution_count

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        text = self._redact(text)
        last = self.outputs[-1] if self.outputs else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})
        self._listener(name, text)

    def display(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        data = self._redact_data(data)
        self.outputs.append(
            {"output_type": "display_data", "data": data, "metadata": metadata or {}}
        )
        if "text/plain" in data:
            self._listener("stdout", str(data["text/plain"]) + "\n")

    def result(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        data = self._redact_data(data)
        self.outputs.append(
            {
                "output_type": "execute_result",
                "data": data,
                "metadata": metadata or {},
                "execution_count": self._execution_count,
            }
        )
        if "text/plain" in data:
            self._listener("stdout", str(data["text/plain"]) + "\n")

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        self.outputs.append(
            {
                "output_type": "error",
                "ename": ename,
                "evalue": self._redact(evalue),
                "traceback": [self._redact(line) for line in traceback],
            }
        )

    def _redact_data(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            mime: self._redact(value) if isinstance(value, str) else value
            for mime, value in data.items()
        }


class CollectorStream(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` stand-in feeding an ``OutputCollector``."""

    def __init__(self, collector: OutputCollector, name: str) -> None:
        self._collector = collector
        self.name = name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._collector.stream(self.name, text)
        return len(text)


def plain_text(text: str) -> str:
    return ANSI.sub("", text)


@contextmanager
def redirect_output(collector: OutputCollector) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = CollectorStream(collector, "stdout")
    sys.stderr = CollectorStream(collector, "stderr")
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
