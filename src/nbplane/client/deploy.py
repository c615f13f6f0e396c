"""Remote job work that takes more than one request: which team, deploying a job directory,
the version to download. Shared by the CLI and the JupyterLab extension, so both deploy alike."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbplane.errors import ConfigError, Conflict, NotFound

if TYPE_CHECKING:
    from nbplane.client import NbplaneClient
    from nbplane.deployments.models import DescribeDeployment, DescribeVersion


def checked_name(value: str, what: str, field: str) -> str:
    """Names the server would refuse are refused here, before anything is sent."""
    from nbplane.deployments.models import check_name

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
    first deploy. ``changes`` (schedule, timezone, enabled, arguments, reason) left out keep
    their deployed values on a redeploy. Team and name default to the job's own config."""
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
