"""Which retention a job has, and applying it: ``nbplane job prune`` to the runs of this
machine, the server's loop to deployed jobs' executions (SQL in ``store/retention.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nbplane.errors import ConfigError, JobDefinitionError
from nbplane.jobs.definition import load_config
from nbplane.jobs.models import DescribePrune, DescribeRetention
from nbplane.settings import Settings
from nbplane.store import Store


def retention_of(settings: Settings, *overrides: Mapping[str, float | None]) -> DescribeRetention:
    """The NBPLANE_RETENTION_* defaults with each of ``overrides`` over them in turn (a job's
    config.ini, then command-line options); a None overrides nothing."""
    values: dict[str, float] = {
        "keep_runs": settings.retention_keep_runs,
        "keep_days": settings.retention_keep_days,
        "keep_outputs": settings.retention_keep_outputs,
    }
    for override in overrides:
        values.update({key: value for key, value in override.items() if value is not None})
    return DescribeRetention.model_validate(values)


def prune_local(
    store: Store,
    settings: Settings,
    directory: Path | None,
    options: Mapping[str, float | None],
    *,
    dry_run: bool,
) -> list[DescribePrune]:
    """Prune the runs this machine recorded of the job in ``directory`` (None: of every job),
    each as its config.ini's ``[retention]`` says (defaults for a directory that is gone) with
    ``options`` over it."""
    if directory is not None:
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"{directory}: not a directory", field="directory")
        job_dirs = [str(directory.resolve())]
    else:
        job_dirs = store.retention.local_jobs()
    found = []
    for job_dir in job_dirs:
        store.list_runs(job_dir, limit=1)  # closes runs whose process died: they can go too
        path = Path(job_dir)
        try:
            configured = load_config(path).retention if path.is_dir() else {}
        except JobDefinitionError as exc:  # with --all: say which job
            raise JobDefinitionError(f"{path}: {exc.message}", **exc.fields) from None
        retention = retention_of(settings, configured, options)
        found.append(store.retention.prune_runs(job_dir, retention, dry_run=dry_run))
    return found


def prune_deployed(store: Store, settings: Settings) -> list[DescribePrune]:
    """Prune every deployed job's executions as its deployed version's config.ini says, and
    the runs of executions whose job was deleted. Returns what went, job by job."""
    found = [
        store.retention.prune_executions(job, retention_of(settings, job.retention))
        for job in store.retention.deployed_jobs()
    ]
    return [*found, store.retention.prune_orphans()]
