"""An IPython shell per notebook: IPython semantics for steps, outputs sent to a collector.

Notebook APIs run their cells on the same shell (see :mod:`nbplane.apis.engines._shellserver`),
with :meth:`StepShell.run_source` and outputs sent to the engine instead of collected.
"""

from __future__ import annotations

import linecache
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from IPython.core.compilerop import CachingCompiler
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Type
from traitlets.config import Config

from nbplane.jobs.capture import Outputs, redirect_output
from nbplane.jobs.checkpoints import user_variables
from nbplane.jobs.definition import Step


class StepCompiler(CachingCompiler):
    """Remembers which step each compiled cell came from, to place errors on their line."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.current: Step | None = None
        self.steps_by_code_name: dict[str, Step] = {}

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        if self.current is None:
            return str(super().get_code_name(raw_code, transformed_code, number))
        return f"<{self.current.file} cell {self.current.cell_number}>"

    def cache(self, transformed_code: str, number: int = 0, raw_code: str | None = None) -> str:
        name: str = super().cache(transformed_code, number, raw_code)
        if self.current is not None:
            self.steps_by_code_name[name] = self.current
        return name


class CollectingPublisher(DisplayPublisher):
    def publish(
        self,
        data: Any,
        metadata: Any = None,
        source: Any = None,
        *,
        transient: Any = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        collector = getattr(self.shell, "collector", None)
        if collector is not None:
            display_id = (transient or {}).get("display_id")
            collector.display(data, metadata, display_id, update)

    def clear_output(self, wait: bool = False) -> None:
        collector = getattr(self.shell, "collector", None)
        if collector is not None:
            collector.clear(wait)


class CollectingDisplayHook(DisplayHook):
    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: Any, md_dict: Any = None) -> None:
        collector = getattr(self.shell, "collector", None)
        if collector is not None:
            collector.result(format_dict, md_dict)

    def finish_displayhook(self) -> None:
        self._is_active = False


@dataclass
class CellError:
    """Where a cell failed: the step, the line in it and that line's text."""

    step: Step
    exception: BaseException
    line: int | None
    line_text: str | None


class StepShell(InteractiveShell):
    """The namespace of one notebook; ``run_step`` runs one cell in it."""

    displayhook_class = Type(CollectingDisplayHook)
    display_pub_class = Type(CollectingPublisher)
    compiler_class = Type(StepCompiler)

    def __init__(self, user_ns: dict[str, Any]) -> None:
        config = Config()
        config.HistoryManager.enabled = False
        super().__init__(user_ns=user_ns, config=config, colors="nocolor")  # type: ignore[no-untyped-call]
        self.collector: Outputs | None = None
        self.last_traceback: list[str] = []

    def _showtraceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        self.last_traceback = list(stb)

    def run_step(self, step: Step, collector: Outputs) -> CellError | None:
        """Run a cell's code with IPython semantics; None when it succeeded."""
        compiler = self.compile
        assert isinstance(compiler, StepCompiler)
        compiler.current = step
        try:
            exception = self.run_source(step.source, collector)
        finally:
            compiler.current = None
        if exception is None:
            return None
        return locate_error(exception, compiler.steps_by_code_name, step)

    def run_source(
        self, source: str, collector: Outputs, store_history: bool = True
    ) -> BaseException | None:
        """Run ``source`` as a cell, its outputs and error going to ``collector``; what it
        raised, or None when it succeeded."""
        self.collector, self.last_traceback = collector, []
        try:
            with redirect_output(collector), self._as_current_shell():
                result = self.run_cell(source, store_history=store_history)  # type: ignore[no-untyped-call]
        finally:
            self.collector = None
        exception: BaseException | None = result.error_before_exec or result.error_in_exec
        if exception is not None:
            collector.error(type(exception).__name__, str(exception), self.last_traceback)
        return exception

    @contextmanager
    def _as_current_shell(self) -> Iterator[None]:
        """``display()`` and friends publish through the singleton shell: make it this one."""
        saved = InteractiveShell._instance
        InteractiveShell._instance = StepShell._instance = self  # type: ignore[assignment]
        try:
            yield
        finally:
            InteractiveShell._instance = StepShell._instance = saved

    def user_variables(self) -> dict[str, Any]:
        """The user's own names: what a checkpoint keeps."""
        return user_variables(self.user_ns, self.user_ns_hidden)


def locate_error(
    exception: BaseException, steps_by_code_name: dict[str, Step], default: Step
) -> CellError:
    """The innermost frame that belongs to a step, with the line as the user wrote it."""
    if isinstance(exception, SyntaxError) and exception.filename in steps_by_code_name:
        step = steps_by_code_name[exception.filename]
        return CellError(step, exception, exception.lineno, _source_line(step, exception.lineno))
    found: CellError = CellError(default, exception, None, None)
    traceback: TracebackType | None = exception.__traceback__
    while traceback is not None:
        owner = steps_by_code_name.get(traceback.tb_frame.f_code.co_filename)
        if owner is not None:
            line = traceback.tb_lineno
            text = (
                _source_line(owner, line)
                or linecache.getline(traceback.tb_frame.f_code.co_filename, line).strip()
                or None
            )
            found = CellError(owner, exception, line, text)
        traceback = traceback.tb_next
    return found


def _source_line(step: Step, line: int | None) -> str | None:
    lines = step.source.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return None
    return lines[line - 1].strip() or None
