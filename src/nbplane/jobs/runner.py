"""Run a job's steps top to bottom in this process, recording every step and its outputs."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbplane.errors import ConfigError, NbplaneError, QueryError, StepFailed
from nbplane.jobs.backend import JobState, RunRecords, StoreJobState, job_database
from nbplane.jobs.capture import OutputCollector, plain_text, redirect_output
from nbplane.jobs.checkpoints import (
    changed_names,
    identities,
    restore_checkpoint,
    take_checkpoint,
    user_variables,
)
from nbplane.jobs.definition import Job, Step, StepKind, load_job
from nbplane.jobs.job_input import JobInput, check_database_url
from nbplane.jobs.models import CreateRun, DescribeRun, DescribeRunStep, RunStatus, StepStatus
from nbplane.jobs.resume import RunPlan, plan_run
from nbplane.jobs.sql import split_statements
from nbplane.notebooks.reader import notebook_json
from nbplane.platform.dburl import redact_url
from nbplane.settings import Settings, get_settings
from nbplane.store import Store, open_store

if TYPE_CHECKING:
    from nbplane.jobs.shell import StepShell


class Reporter:
    """Hears about a run while it happens (the CLI draws progress from it); no-ops by default."""

    def run_started(self, run: DescribeRun, job: Job, plan: RunPlan) -> None:
        pass

    def step_skipped(self, step: Step, record: DescribeRunStep) -> None:
        pass

    def step_started(self, step: Step) -> None:
        pass

    def step_output(self, step: Step, stream: str, text: str) -> None:
        pass

    def step_finished(self, step: Step, record: DescribeRunStep) -> None:
        pass

    def run_finished(self, run: DescribeRun) -> None:
        pass


def run_job(
    directory: Path,
    *,
    arguments: dict[str, Any] | None = None,
    db_url: str | None = None,
    resume: bool = False,
    from_step: str | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    store: RunRecords | None = None,
    state: JobState | None = None,
    deployed: DeployedIdentity | None = None,
) -> DescribeRun:
    """Run the job in ``directory``; returns its record, which always has a final status.
    Records and state default to nbplane's database (``NBPLANE_STORE_URL``); a deployed
    execution passes the server's execution API for both."""
    settings = settings or get_settings()
    job = load_job(directory)
    if deployed is not None:  # properties and secrets are the deployed job's
        config = replace(job.config, team=deployed.team, name=deployed.name)
        job = replace(job, config=config)
    arguments = dict(arguments or {})
    execution_id = deployed.execution_id if deployed else None
    opened = None
    if store is None:
        store = opened = open_store(settings.resolved_store_url)
    try:
        if state is None:
            if not isinstance(store, Store):
                raise ConfigError("run records outside nbplane's database need a job state")
            state = StoreJobState(store, settings)
        return _run(
            job,
            store,
            state,
            arguments,
            db_url,
            resume,
            from_step,
            reporter,
            settings,
            execution_id,
        )
    finally:
        if opened is not None:
            opened.close()


@dataclass(frozen=True)
class DeployedIdentity:
    """A run of a deployed job: its team and name in the control plane, and its execution."""

    team: str
    name: str
    execution_id: str


def _run(
    job: Job,
    store: RunRecords,
    state: JobState,
    arguments: dict[str, Any],
    db_url: str | None,
    resume: bool,
    from_step: str | None,
    reporter: Reporter | None,
    settings: Settings,
    execution_id: str | None = None,
) -> DescribeRun:
    plan = plan_run(job, store, arguments, resume=resume, from_step=from_step)
    target_db = job_database(db_url, job, state, settings)
    check_database_url(target_db)
    run = store.create_run(
        CreateRun(
            job_dir=str(job.directory),
            job_name=job.name,
            job_team=job.config.team,
            arguments=arguments,
            db_url=redact_url(target_db, hide_path=execution_id is not None),
            resumed=resume or bool(from_step),
            plan=plan.notes,
        ),
        execution_id,
    )
    execution = JobExecution(
        job,
        run,
        plan,
        store=store,
        state=state,
        settings=settings,
        db_url=target_db,
        arguments=arguments,
        reporter=reporter or Reporter(),
        execution_id=execution_id,
    )
    return execution.execute()


class JobExecution:
    """One run in progress: namespaces per notebook, the job_input, and the step records."""

    def __init__(
        self,
        job: Job,
        run: DescribeRun,
        plan: RunPlan,
        *,
        store: RunRecords,
        state: JobState,
        settings: Settings,
        db_url: str,
        arguments: dict[str, Any],
        reporter: Reporter,
        execution_id: str | None = None,
    ) -> None:
        self.job, self.run, self.plan = job, run, plan
        self.execution_id = execution_id or f"{job.name}-run-{run.id}"
        self.store, self.state, self.settings, self.db_url = store, state, settings, db_url
        self.arguments, self.reporter = arguments, reporter
        self.records: dict[int, DescribeRunStep] = {}
        self.running: Step | None = None
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.shells: dict[str, StepShell] = {}
        self.job_input: JobInput | None = None

    def execute(self) -> DescribeRun:
        self.reporter.run_started(self.run, self.job, self.plan)
        status, error = RunStatus.SUCCEEDED, None
        stop_reason: tuple[StepStatus, str] | None = None
        try:
            with _inside(self.job.directory):
                self.job_input = JobInput(
                    self.job,
                    state=self.state,
                    settings=self.settings,
                    db_url=self.db_url,
                    arguments=self.arguments,
                    execution_id=self.execution_id,
                    template_runner=self._run_template,
                )
                for step in self.job.steps:
                    if step.index < self.plan.start:
                        self._record_skip(
                            step, StepStatus.SKIPPED, self.plan.skip_reasons[step.index]
                        )
                    elif stop_reason is not None:
                        self._record_skip(step, *stop_reason)
                    else:
                        record = self._run_step(step, self.job_input)
                        if record.status == StepStatus.FAILED:
                            status, error = RunStatus.FAILED, record.error
                            stop_reason = (
                                StepStatus.NOT_RUN,
                                f"step {step.index + 1} ({step.name}) failed",
                            )
                        elif self.job_input.skip_requested:
                            stop_reason = (
                                StepStatus.SKIPPED,
                                "skip_remaining_steps() was "
                                f"called in step {step.index + 1} ({step.name})",
                            )
        except KeyboardInterrupt:
            status, error = RunStatus.CANCELLED, {"message": "interrupted by the user"}
        except NbplaneError as exc:
            status, error = RunStatus.FAILED, exc.to_dict()
        except BaseException as exc:  # SystemExit too (sys.exit in a step, stdout closed)
            status, error = RunStatus.FAILED, {"message": f"nbplane failed: {exc!r}"}
            raise
        finally:
            reason = (error or {}).get("message", "the run ended")
            if self.running is not None:  # its work may be half done: resume must rerun it
                self._record_interrupted(self.running, reason)
            for step in self.job.steps:
                if step.index not in self.records:
                    self._record_skip(step, StepStatus.NOT_RUN, reason)
            if self.job_input is not None:
                self.job_input.close()
            self.run = self.store.finish_run(
                self.run.id, status, error, notebooks=self._executed_notebooks()
            )
            self.reporter.run_finished(self.run)
        return self.run

    # steps
    def _run_step(self, step: Step, job_input: JobInput) -> DescribeRunStep:
        self.running = step
        self.reporter.step_started(step)
        collector = OutputCollector(
            lambda stream, text: self.reporter.step_output(step, stream, text),
            self._redact,
            execution_count=step.index + 1,
        )
        started, clock = datetime.now(UTC), time.perf_counter()
        error: dict[str, Any] | None = None
        notebook = step.notebook
        before = identities(self._user_variables(notebook, job_input)) if notebook else {}
        try:
            if step.kind == StepKind.PYTHON_CELL:
                assert notebook is not None
                cell_error = self._shell(notebook, job_input).run_step(step, collector)
                if cell_error is not None:
                    error = self._error_fields(
                        step,
                        cell_error.step,
                        cell_error.line,
                        cell_error.line_text,
                        cell_error.exception,
                        "\n".join(collector.outputs[-1]["traceback"]),
                    )
            elif step.is_sql:
                self._run_sql(step, job_input, collector)
            else:
                error = self._run_python_file(step, job_input, collector)
            if error is None:
                job_input.flush_ingestion()
        except QueryError as exc:  # a statement of a SQL step
            error = self._sql_error_fields(step, exc)
            collector.error("QueryError", exc.message, [error["message"]])
        except NbplaneError as exc:  # writing the step's ingested rows
            error = {
                **step.location(),
                **exc.fields,
                "message": self._redact(f"step {step.index + 1} ({step.name}): {exc.message}"),
            }
            collector.error(type(exc).__name__, exc.message, [error["message"]])
        checkpoint, unpicklable, defined = None, {}, []
        if error is None and notebook is not None:
            variables = self._user_variables(notebook, job_input)
            taken = take_checkpoint(variables)
            checkpoint, unpicklable = taken.blob, taken.unpicklable
            defined = changed_names(before, variables)
        record = DescribeRunStep(
            position=step.index,
            name=step.name,
            kind=step.kind,
            file=step.file,
            cell_number=step.cell_number,
            cell_id=step.cell_id,
            status=StepStatus.FAILED if error else StepStatus.SUCCEEDED,
            reason=self.plan.run_reasons.get(step.index),
            started_at=started,
            duration=time.perf_counter() - clock,
            code_hash=step.code_hash,
            chain_hash=self.plan.chains[step.index],
            error=error,
            defined_names=defined,
            unpicklable=unpicklable,
            outputs=collector.outputs,
        )
        self.store.add_step(self.run.id, record, checkpoint)
        self.records[step.index] = record
        self.running = None
        self.reporter.step_finished(step, record)
        return record

    def _record_skip(self, step: Step, status: StepStatus, reason: str) -> None:
        self._record_unrun(step, status, reason=reason)

    def _record_interrupted(self, step: Step, reason: str) -> None:
        """A step the run ended in (Ctrl-C, an error of nbplane) counts as failed."""
        message = f"step {step.index + 1} did not finish: {reason}"
        self._record_unrun(step, StepStatus.FAILED, error={**step.location(), "message": message})
        self.running = None

    def _record_unrun(self, step: Step, status: StepStatus, **fields: Any) -> None:
        """Record a step that has no outputs or checkpoint of its own."""
        record = DescribeRunStep(
            position=step.index,
            name=step.name,
            kind=step.kind,
            file=step.file,
            cell_number=step.cell_number,
            cell_id=step.cell_id,
            status=status,
            code_hash=step.code_hash,
            chain_hash=self.plan.chains[step.index],
            **fields,
        )
        self.store.add_step(self.run.id, record, None)
        self.records[step.index] = record
        if status == StepStatus.FAILED:
            self.reporter.step_finished(step, record)
        else:
            self.reporter.step_skipped(step, record)

    def _namespace(self, notebook: str, job_input: JobInput) -> dict[str, Any]:
        """A notebook's namespace, shared by its steps: its checkpoint when resuming, and
        ``job_input``."""
        if notebook not in self.namespaces:
            namespace: dict[str, Any] = {}
            restore_from = self.plan.restore.get(notebook)
            if restore_from is not None and restore_from.id is not None:
                blob = self.store.load_checkpoint(restore_from.id)
                if blob:
                    namespace.update(restore_checkpoint(blob))
            namespace["job_input"] = job_input
            self.namespaces[notebook] = namespace
        return self.namespaces[notebook]

    def _shell(self, notebook: str, job_input: JobInput) -> StepShell:
        """The notebook's IPython shell on its namespace, made for its first Python cell:
        SQL cells need none, and IPython is the costliest import of a run after SQLAlchemy."""
        if notebook not in self.shells:
            from nbplane.jobs.shell import StepShell

            self.shells[notebook] = StepShell(user_ns=self._namespace(notebook, job_input))
        return self.shells[notebook]

    def _user_variables(self, notebook: str, job_input: JobInput) -> dict[str, Any]:
        shell = self.shells.get(notebook)
        if shell is not None:
            return shell.user_variables()
        return user_variables(self._namespace(notebook, job_input))

    def _run_sql(self, step: Step, job_input: JobInput, collector: OutputCollector) -> None:
        for statement in split_statements(step.sql or ""):
            result = job_input.run_statement(statement)
            if result.columns:
                collector.display(
                    {"text/plain": repr(result), "text/html": result._repr_html_()}, {}
                )

    def _run_python_file(
        self, step: Step, job_input: JobInput, collector: OutputCollector
    ) -> dict[str, Any] | None:
        """Run ``run(job_input)`` of a ``.py`` step; the error fields if it raised."""
        path = self.job.directory / step.file
        spec = importlib.util.spec_from_file_location(f"nbplane_step_{step.index}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            with redirect_output(collector):
                spec.loader.exec_module(module)
                module.run(job_input)
        except Exception as exc:  # the user's code raised: report it at their line
            line, text, trace = _python_file_error(exc, path)
            collector.error(type(exc).__name__, str(exc), [trace])
            return self._error_fields(step, step, line, text, exc, trace)
        return None

    def _run_template(self, directory: Path, arguments: dict[str, Any]) -> DescribeRun:
        run = run_job(
            directory,
            arguments=arguments,
            db_url=self.db_url,
            reporter=self.reporter,
            settings=self.settings,
            store=self.store,
            state=self.state,
        )
        if run.status != RunStatus.SUCCEEDED:
            message = (run.error or {}).get("message", run.status)
            raise StepFailed(
                f"template {directory.name} (run {run.number}) failed: {message}",
                template=directory.name,
                template_run=run.id,
            )
        return run

    def _redact(self, text: str) -> str:
        for value in self.job_input.secret_values() if self.job_input else []:
            text = text.replace(value, "[secret]")
        return text

    # errors
    def _error_fields(
        self,
        step: Step,
        where: Step,
        line: int | None,
        line_text: str | None,
        exception: BaseException,
        trace: str,
    ) -> dict[str, Any]:
        """A Python failure; ``where`` is the step whose code raised (maybe an earlier cell)."""
        fields = self._failure(
            step, where, line, line_text, f"{type(exception).__name__}: {exception}"
        )
        return {
            **fields,
            "exception": type(exception).__name__,
            "traceback": self._redact(plain_text(trace)),
        }

    def _sql_error_fields(self, step: Step, exc: QueryError) -> dict[str, Any]:
        line = step.sql_line_offset + int(exc.fields.get("line", 1))
        lines = step.source.splitlines()
        line_text = lines[line - 1].strip() if 1 <= line <= len(lines) else None
        fields = self._failure(step, step, line, line_text, exc.message)
        statement = exc.fields.get("statement")
        return {
            **fields,
            "exception": "QueryError",
            "statement": self._redact(statement) if statement else None,
        }

    def _failure(
        self, step: Step, where: Step, line: int | None, line_text: str | None, summary: str
    ) -> dict[str, Any]:
        """The fields every step failure has, and its message in words."""
        place = _describe_place(where, line, line_text)
        if where == step:
            message = f"step {step.index + 1} failed at {place}: {summary}"
        else:
            message = (
                f"step {step.index + 1} ({_describe_place(step, None, None)}) failed; "
                f"raised at {place}: {summary}"
            )
        return {
            **step.location(),
            "line": line,
            "line_text": line_text,
            "raised_in": where.name if where != step else None,
            "summary": self._redact(summary),
            "message": self._redact(message),
        }

    # executed notebooks
    def _executed_notebooks(self) -> dict[str, str]:
        by_cell = {
            (r.file, r.cell_number): r for r in self.records.values() if r.cell_number is not None
        }
        executed = {}
        for name, notebook in self.job.notebooks.items():
            document = copy.deepcopy(notebook.node)
            for number, cell in enumerate(document["cells"], start=1):
                if cell["cell_type"] != "code":
                    continue
                cell["outputs"], cell["execution_count"] = [], None
                record = by_cell.get((name, number))
                if record is None:
                    continue
                cell.setdefault("metadata", {})["nbplane"] = {
                    "step": record.position + 1,
                    "status": record.status,
                    "duration": record.duration,
                    "reason": record.reason,
                }
                if record.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
                    cell["execution_count"] = record.position + 1
                    cell["outputs"] = record.outputs
            executed[name] = notebook_json(document)
        return executed


def _describe_place(step: Step, line: int | None, line_text: str | None) -> str:
    """``10_a.ipynb cell 3 (id 1f2e), line 4 `x = 1/0``` or ``20_load.py, line 2 `...```."""
    place = step.file
    if step.cell_number is not None:
        place += f" cell {step.cell_number}" + (f" (id {step.cell_id})" if step.cell_id else "")
    if line is not None:
        place += f", line {line}"
    if line_text:
        place += f" `{line_text}`"
    return place


def _python_file_error(exc: BaseException, path: Path) -> tuple[int | None, str | None, str]:
    """The line of the step file that raised, and the traceback from the user's first frame."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(path):
        tb = tb.tb_next
    trace = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    line = text = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is not None:
        source_lines = path.read_text(encoding="utf-8").splitlines()
        text = source_lines[line - 1].strip() if line <= len(source_lines) else None
    return line, text, trace


@contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """Steps run with the job directory as working directory and importable, as in Jupyter."""
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
