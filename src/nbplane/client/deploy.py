"""Remote job work that takes more than one request: which team, deploying a job directory,
following an execution to its end, downloading a version. Shared by the CLI and the JupyterLab
extension, so both deploy alike; what they show of it is their own."""

from __future__ import annotations

import io
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbplane.errors import ConfigError, Conflict, NotFound

if TYPE_CHECKING:
    from nbplane.client import NbplaneClient
    from nbplane.deployments.models import (
        DescribeDeployment,
        DescribeJobExecution,
        DescribeVersion,
    )

POLL_SECONDS = 1.0
"""How often ``follow_execution`` asks for the execution's status while its log streams."""


def checked_name(value: str, what: str, field: str) -> str:
    """Names the server would refuse are refused here, before anything is sent."""
    from nbplane.platform.names import check_name

    try:
        return check_name(value, what)
    except ValueError as exc:
        raise ConfigError(str(exc), field=field) from None


def only_team(client: NbplaneClient) -> str:
    """The caller's team when they are in exactly one; otherwise they must say which."""
    caller = client.me()
    if len(caller.teams) == 1:
        return caller.teams[0]
    if not caller.teams:
        raise ConfigError(
            f"{caller.user} is in no team on {client.url}: name a team (--team TEAM), or have "
            f"an admin run `nbplane user join {caller.user} TEAM`",
            field="team",
        )
    raise ConfigError(
        f"{caller.user} is in teams {', '.join(caller.teams)}: name the team (--team) to say which",
        field="team",
    )


def export_archive(directory: Path) -> bytes:
    """The zip ``nbplane job export`` writes, as bytes."""
    from nbplane.jobs.scaffold import export_job

    with tempfile.TemporaryDirectory(prefix="nbplane-deploy-") as scratch:
        path = Path(scratch) / "job.zip"
        export_job(directory, path)
        return path.read_bytes()


@dataclass(frozen=True)
class Deployed:
    """What a deploy did: the job (made on its first deploy), its new version and deployment."""

    team: str
    name: str
    created: bool
    version: DescribeVersion
    deployment: DescribeDeployment


def deploy_directory(
    client: NbplaneClient,
    directory: Path,
    *,
    team: str | None,
    name: str | None,
    changes: dict[str, Any],
) -> Deployed:
    """Upload the job in ``directory`` as a version and deploy it; the job is created on its
    first deploy. ``changes`` (schedule, timezone, enabled, arguments, retries, retry_delay,
    retry_on, reason) left out keep their deployed values on a redeploy. Team and name default
    to the job's own config."""
    from nbplane.deployments.models import CreateJob, DeployJob, UpdateDeployment
    from nbplane.jobs.definition import load_config

    archive = export_archive(directory)
    config = load_config(directory)
    name = checked_name(name or config.name, "job name", "name")
    team = team or config.team
    team = checked_name(team, "team", "team") if team else only_team(client)
    created = True
    try:
        client.create_job(team, CreateJob(name=name, description=config.description))
    except Conflict:
        created = False  # it exists: this is a redeploy
    version = client.upload_version(team, name, archive)
    wanted = {"version": version.id, **changes}
    if client.get_job(team, name).deployment is None:
        deployment = client.deploy(team, name, DeployJob.model_validate(wanted))
    else:
        deployment = client.update_deployment(team, name, UpdateDeployment.model_validate(wanted))
    return Deployed(team, name, created, version, deployment)


def current_version(client: NbplaneClient, team: str, name: str) -> str:
    """The deployed version, else the newest upload."""
    deployment = client.get_job(team, name).deployment
    if deployment is not None:
        return deployment.version
    versions = client.list_versions(team, name)
    if not versions:
        raise NotFound(f"job {team}/{name} has no versions yet", field="version")
    return max(versions, key=lambda described: described.created_at).id


def latest_execution(client: NbplaneClient, team: str, name: str) -> str:
    """The id of the job's newest execution."""
    latest = client.list_executions(team, name, limit=1).items
    if not latest:
        raise NotFound(f"job {team}/{name} has no executions yet", field="execution")
    return latest[0].id


def steps_done(execution: DescribeJobExecution) -> int:
    from nbplane.jobs.models import StepStatus

    return sum(step.status != StepStatus.NOT_RUN for step in execution.steps)


OnProgress = Callable[["DescribeJobExecution", "int | None"], None]
"""Told the execution as it is now, and its version's number of steps (None: unknown)."""


def follow_execution(
    client: NbplaneClient,
    execution: DescribeJobExecution,
    write: Callable[[str], None],
    progress: OnProgress | None = None,
    every: float = POLL_SECONDS,
) -> DescribeJobExecution:
    """Write the execution's log as it grows until the execution is final, and return it as
    it ended. With ``progress``, a thread reports the execution every ``every`` seconds
    meanwhile; that is only for a status line, so its failed requests are skipped (the log
    stream reports real failures)."""
    done = threading.Event()
    if progress is not None:
        threading.Thread(
            target=_report_progress, args=(client, execution, progress, every, done), daemon=True
        ).start()
    try:
        for chunk in client.follow_logs(execution.team, execution.job, execution.id):
            write(chunk)
    finally:
        done.set()
    return client.get_execution(execution.team, execution.job, execution.id)


def _report_progress(
    client: NbplaneClient,
    execution: DescribeJobExecution,
    progress: OnProgress,
    every: float,
    done: threading.Event,
) -> None:
    team, name = execution.team, execution.job
    steps = None
    try:
        versions = client.list_versions(team, name)
        steps = next(len(v.steps) for v in versions if v.id == execution.version)
    except Exception:  # without the count, a progress bar pulses
        pass
    while not done.wait(every):
        try:
            current = client.get_execution(team, name, execution.id)
        except Exception:
            continue
        progress(current, steps)


def download_directory(
    client: NbplaneClient, team: str, name: str, version: str | None, target: Path
) -> tuple[str, int]:
    """Unpack a version of the job (default: the deployed one, else the newest upload) into
    ``target``, which must not exist or be empty; returns the version and how many files."""
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} is not empty; pick another with -o DIR", field="output")
    if version is None:
        version = current_version(client, team, name)
    archive = client.download_version(team, name, version)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
            members = [info for info in unpacked.infolist() if not info.is_dir()]
            unpacked.extractall(target)  # strips absolute paths and '..' parts
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"the server sent no zip archive for version {version}: {exc}") from None
    return version, len(members)
