"""Collect a step's outputs as nbformat outputs while streaming its text live.

:class:`Outputs` is where a running cell's outputs go (the job runner's :class:`OutputCollector`,
or a notebook API's shell sending them to the engine, see
:mod:`nbplane.apis.engines._shellserver`); :func:`redirect_output` points ``sys.stdout`` and
``sys.stderr`` at one.
"""

from __future__ import annotations

import io
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TextListener = Callable[[str, str], None]
"""Called with (stream name, text) as a step writes."""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Outputs(ABC):
    """Where the outputs of the running cell go, as IPython and the cell's streams make them."""

    @abstractmethod
    def stream(self, name: str, text: str) -> None: ...

    @abstractmethod
    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None,
        display_id: str | None = None,
        update: bool = False,
    ) -> None:
        """A display; ``update``: new content for the earlier displays of ``display_id``."""

    @abstractmethod
    def result(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None: ...

    @abstractmethod
    def error(self, ename: str, evalue: str, traceback: list[str]) -> None: ...

    @abstractmethod
    def clear(self, wait: bool) -> None:
        """``clear_output``: drop the outputs so far (``wait``: when the next one comes)."""

    def flush(self) -> None:  # noqa: B027 (optional hook)
        """The cell flushed a stream: text held back goes out now."""


class OutputCollector(Outputs):
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
        self._displays: dict[str, list[dict[str, Any]]] = {}
        self._clear_pending = False

    def clear(self, wait: bool) -> None:
        if wait:
            self._clear_pending = True
        else:
            self.outputs.clear()

    def _clear_if_pending(self) -> None:
        if self._clear_pending:
            self._clear_pending = False
            self.outputs.clear()

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        self._clear_if_pending()
        text = self._redact(text)
        last = self.outputs[-1] if self.outputs else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})
        self._listener(name, text)

    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None,
        display_id: str | None = None,
        update: bool = False,
    ) -> None:
        self._clear_if_pending()
        data = self._redact_data(data)
        if update:
            for output in self._displays.get(display_id or "", []):
                output["data"], output["metadata"] = data, metadata or {}
            return
        output = {"output_type": "display_data", "data": data, "metadata": metadata or {}}
        self.outputs.append(output)
        if display_id:
            self._displays.setdefault(display_id, []).append(output)
        if "text/plain" in data:
            self._listener("stdout", str(data["text/plain"]) + "\n")

    def result(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        self._clear_if_pending()
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
        self._clear_if_pending()
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
    """A ``sys.stdout``/``sys.stderr`` stand-in feeding an :class:`Outputs`."""

    def __init__(self, collector: Outputs, name: str) -> None:
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

    def flush(self) -> None:
        self._collector.flush()


def plain_text(text: str) -> str:
    return ANSI.sub("", text)


@contextmanager
def redirect_output(collector: Outputs) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = CollectorStream(collector, "stdout")
    sys.stderr = CollectorStream(collector, "stderr")
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
