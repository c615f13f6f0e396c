"""Decide where a run starts: from the first step that failed or changed, or a forced one."""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nbplane.jobs.backend import RunRecords
from nbplane.jobs.definition import Job, Step, StepKind
from nbplane.jobs.models import (
    DescribeJobHistory,
    DescribeRunStep,
    DescribeStepExecution,
    StepStatus,
)


@dataclass
class RunPlan:
    """Where the run starts, what is skipped and why, and which namespaces to restore."""

    chains: list[str]
    start: int = 0
    notes: list[str] = field(default_factory=list)
    skip_reasons: dict[int, str] = field(default_factory=dict)
    run_reasons: dict[int, str] = field(default_factory=dict)
    """Why a step of a resumed (or --from-step) run runs again."""
    restore: dict[str, DescribeRunStep] = field(default_factory=dict)
    """Per notebook: the up-to-date execution whose checkpoint becomes its namespace."""


def arguments_hash(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()


def chain_hashes(job: Job, arguments: dict[str, Any]) -> list[str]:
    """Each step's hash covers its code, every earlier step's code and the arguments."""
    chain = arguments_hash(arguments)
    chains = []
    for step in job.steps:
        chain = hashlib.sha256(f"{chain}\0{step.code_hash}".encode()).hexdigest()
        chains.append(chain)
    return chains


@dataclass
class LastExecution:
    """A step's most recent execution: its record (None when the run died while the step
    ran), the run's number, and why the step is not up to date (None when it is)."""

    record: DescribeRunStep | None
    run_number: int
    stale: str | None


def plan_run(
    job: Job, store: RunRecords, arguments: dict[str, Any], *, resume: bool, from_step: str | None
) -> RunPlan:
    """A step is skipped only when the state it would produce is the one its latest execution
    left: that execution succeeded with the same chain (code, earlier code, arguments). Steps
    are told apart across runs by name (``file#cell``), as their code hash and --from-step do."""
    plan = RunPlan(chains=chain_hashes(job, arguments))
    if not resume and from_step is None:
        return plan
    history = store.job_history(str(job.directory))
    if history.last_run_number is None:
        plan.notes.append("no earlier run of this job: running every step")
        if from_step is None:
            return plan
    latest = _last_executions(job, plan, arguments, history)
    up_to_date = [
        last.record if last is not None and last.stale is None else None for last in latest
    ]
    if from_step is not None:
        plan.start = job.find_step(from_step).index
        plan.notes.append(
            f"starting at step {plan.start + 1} ({job.steps[plan.start].name}) "
            "as asked by --from-step"
        )
    else:
        plan.start = next((i for i, record in enumerate(up_to_date) if record is None), len(latest))
        if plan.start < len(job.steps):
            step = job.steps[plan.start]
            plan.notes.append(
                f"resuming at step {plan.start + 1} ({step.name}): "
                f"{_why_stale(latest[plan.start], history.last_run_number)}"
            )
        else:
            plan.notes.append(
                f"nothing changed since run {history.last_run_number}: every step is up to date"
            )
    _settle_restores(job, plan, up_to_date, forced=from_step is not None)
    for step in job.steps:
        last = latest[step.index]
        why = _why_stale(last, history.last_run_number)
        if step.index < plan.start:
            plan.skip_reasons[step.index] = (
                f"unchanged since run {last.run_number}"
                if last is not None and last.stale is None
                else f"skipped by --from-step, though {why}"
            )
        elif step.index == plan.start and from_step is not None:
            plan.run_reasons[step.index] = "as asked by --from-step"
        elif last is None or last.stale is not None:
            plan.run_reasons[step.index] = why
        else:
            first = job.steps[plan.start]
            plan.run_reasons[step.index] = (
                f"up to date, run again after step {plan.start + 1} ({first.name})"
                if step.index > plan.start
                else "up to date, run again for a value that could not be checkpointed"
            )
    return plan


def _last_executions(
    job: Job, plan: RunPlan, arguments: dict[str, Any], history: DescribeJobHistory
) -> list[LastExecution | None]:
    """Each step's latest execution, or None when it never ran."""
    by_name = {execution.step.name: execution for execution in history.executions}
    latest: list[LastExecution | None] = []
    for step, chain in zip(job.steps, plan.chains, strict=True):
        execution = by_name.get(step.name)
        executed_in = (execution.step.run_id or 0) if execution else 0
        newer = [
            run
            for run in history.interrupted
            if run.position == step.index and run.run_id > executed_in
        ]
        if newer:
            cut = max(newer, key=lambda run: run.run_id)
            latest.append(
                LastExecution(
                    None,
                    cut.run_number,
                    f"step {step.index + 1} failed in run {cut.run_number} "
                    "(the run ended while it ran)",
                )
            )
        elif execution is None:
            latest.append(None)
        else:
            latest.append(
                LastExecution(
                    execution.step, execution.run_number, _stale(step, chain, arguments, execution)
                )
            )
    return latest


def _stale(
    step: Step, chain: str, arguments: dict[str, Any], execution: DescribeStepExecution
) -> str | None:
    """Why the step's latest execution did not leave the state this run would, if so."""
    since = f"since run {execution.run_number}"
    if execution.step.status != StepStatus.SUCCEEDED:
        return f"step {step.index + 1} failed in run {execution.run_number}"
    if execution.step.code_hash != step.code_hash:
        return f"its code changed {since}"
    if arguments_hash(execution.arguments) != arguments_hash(arguments):
        return f"the arguments changed {since}"
    if execution.step.chain_hash != chain:
        return f"an earlier step changed {since}"
    return None


def _why_stale(last: LastExecution | None, last_run_number: int | None) -> str:
    if last is None:
        return f"it is new since run {last_run_number}" if last_run_number else "it never ran"
    return last.stale or f"unchanged since run {last.run_number}"


def _settle_restores(
    job: Job, plan: RunPlan, up_to_date: list[DescribeRunStep | None], forced: bool
) -> None:
    """Pick each notebook's checkpoint; move the start back where a needed value is missing."""
    while True:
        plan.restore.clear()
        earliest = plan.start
        notes: list[str] = []
        for notebook in job.notebooks:
            steps = [s for s in job.steps if s.notebook == notebook]
            done = [s for s in steps if s.index < plan.start]
            remaining = [s for s in steps if s.index >= plan.start]
            if not done or not remaining:
                continue
            success = up_to_date[done[-1].index]
            if success is None or not success.has_checkpoint:
                notes.append(
                    f"{notebook}: no checkpoint after step {done[-1].name}; its "
                    "namespace starts empty"
                )
                continue
            missing = _needed(success.unpicklable, remaining)
            if not missing or forced:
                plan.restore[notebook] = success
                for name in missing:
                    notes.append(
                        f"{notebook}: {name} ({success.unpicklable[name]}) could not "
                        "be checkpointed; it will be undefined"
                    )
                continue
            for name in missing:
                definer = next(
                    (
                        s
                        for s in done
                        if (record := up_to_date[s.index]) is not None
                        and name in record.defined_names
                    ),
                    done[0],
                )
                plan.notes.append(
                    f"{name} ({success.unpicklable[name]}) cannot be checkpointed: going back "
                    f"to step {definer.index + 1} ({definer.name}), which defines it"
                )
                earliest = min(earliest, definer.index)
        if earliest == plan.start:
            plan.notes.extend(notes)
            return
        plan.start = earliest


def _needed(unpicklable: dict[str, str], steps: list[Step]) -> list[str]:
    """The unpicklable names that the remaining steps of a notebook may read."""
    if not unpicklable:
        return []
    used: set[str] = set()
    for step in steps:
        if step.kind != StepKind.PYTHON_CELL:
            continue
        names = _names_read(step.source)
        if names is None:
            return sorted(unpicklable)
        used |= names
    return sorted(name for name in unpicklable if name in used)


def _names_read(source: str) -> set[str] | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
