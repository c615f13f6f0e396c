"""Decide where a run starts: from the first step that failed or changed, or a forced one."""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nbplane.jobs.backend import RunRecords
from nbplane.jobs.definition import Job, Step, StepKind
from nbplane.jobs.models import DescribeRun, DescribeRunStep, StepStatus


@dataclass
class RunPlan:
    """Where the run starts, what is skipped and why, and which namespaces to restore."""

    chains: list[str]
    start: int = 0
    notes: list[str] = field(default_factory=list)
    skip_reasons: dict[int, str] = field(default_factory=dict)
    restore: dict[str, DescribeRunStep] = field(default_factory=dict)
    """Per notebook: the earlier success whose checkpoint becomes its namespace."""


def chain_hashes(job: Job, arguments: dict[str, Any]) -> list[str]:
    """Each step's hash covers its code, every earlier step's code and the arguments."""
    chain = hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()
    chains = []
    for step in job.steps:
        chain = hashlib.sha256(f"{chain}\0{step.code_hash}".encode()).hexdigest()
        chains.append(chain)
    return chains


def plan_run(
    job: Job, store: RunRecords, arguments: dict[str, Any], *, resume: bool, from_step: str | None
) -> RunPlan:
    plan = RunPlan(chains=chain_hashes(job, arguments))
    if not resume and from_step is None:
        return plan
    job_dir = str(job.directory)
    successes = [store.last_success(job_dir, chain) for chain in plan.chains]
    if from_step is not None:
        plan.start = job.find_step(from_step).index
        plan.notes.append(
            f"starting at step {plan.start + 1} ({job.steps[plan.start].name}) "
            "as asked by --from-step"
        )
    else:
        last_runs = store.list_runs(job_dir, limit=1)
        if not last_runs:
            plan.notes.append("no earlier run of this job: running every step")
            return plan
        plan.start = _first_stale_step(job, plan, successes, last_runs[0])
    _settle_restores(job, plan, successes, forced=from_step is not None)
    for step in job.steps[: plan.start]:
        success = successes[step.index]
        plan.skip_reasons[step.index] = (
            f"unchanged since run {success.run_id}" if success else "skipped by --from-step"
        )
    return plan


def _first_stale_step(
    job: Job, plan: RunPlan, successes: list[DescribeRunStep | None], last: DescribeRun
) -> int:
    failed = {s.chain_hash for s in last.steps if s.status == StepStatus.FAILED}
    last_by_position = {s.position: s for s in last.steps}
    for step, chain, success in zip(job.steps, plan.chains, successes, strict=True):
        if chain in failed:
            plan.notes.append(
                f"resuming at step {step.index + 1} ({step.name}): it failed in run {last.id}"
            )
            return step.index
        if success is None:
            plan.notes.append(
                f"resuming at step {step.index + 1} ({step.name}): "
                f"{_why_stale(step, last, last_by_position.get(step.index))}"
            )
            return step.index
    plan.notes.append(f"nothing changed since run {last.id}: every step is up to date")
    return len(job.steps)


def _why_stale(step: Step, last: DescribeRun, previous: DescribeRunStep | None) -> str:
    if previous is None or previous.name != step.name:
        return f"it is new since run {last.id}"
    if previous.code_hash != step.code_hash:
        return f"its code changed since run {last.id}"
    if previous.status != StepStatus.SUCCEEDED:
        return f"it was {previous.status} in run {last.id}"
    return "an earlier step or the arguments changed since it last succeeded"


def _settle_restores(
    job: Job, plan: RunPlan, successes: list[DescribeRunStep | None], forced: bool
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
            success = successes[done[-1].index]
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
                        if (record := successes[s.index]) is not None
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
