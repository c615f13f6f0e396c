"""Request bodies of the Jupyter server extension's handlers, checked before anything runs;
strict, so a ``"true"`` where a boolean belongs is refused rather than guessed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nbplane.deployments.models import MAX_RETRIES, MAX_RETRY_DELAY, RetryOn


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LogIn(Strict):
    """``POST login``."""

    url: str = Field(
        min_length=1, description="The nbplane server, e.g. https://nbplane.example.com."
    )
    token: str = Field(min_length=1, description="A token from `nbplane token create`.")


class CreateJobDirectory(Strict):
    """``POST jobs``: a new job folder from the scaffold."""

    name: str = Field(min_length=1, description="The job's name and its folder's.")
    team: str | None = Field(default=None, description="The team that owns it.")
    directory: str = Field(default="", description="The folder to create it in.")
    notebook: str | None = Field(
        default=None, min_length=1, description="A notebook to copy in instead of the example."
    )


class StartRun(Strict):
    """``POST runs``: run a job folder locally."""

    directory: str = Field(min_length=1, description="The job folder.")
    arguments: dict[str, Any] = Field(default_factory=dict)
    resume: bool = Field(default=False, description="Rerun from the changed or failed step.")
    from_step: str | None = Field(default=None, min_length=1, description="Start at this step.")


class ConvertJob(Strict):
    """``POST job/notebook``: a job's steps as one notebook."""

    directory: str = Field(min_length=1, description="The job folder.")
    to: str | None = Field(default=None, min_length=1, description="The notebook to write.")


class PauseDeployment(Strict):
    """``PATCH jobs/TEAM/NAME/deployment``: switch the schedule off or on."""

    enabled: bool


class DeployDirectory(Strict):
    """``POST deploy``: upload a job folder as a version and deploy it."""

    directory: str = Field(min_length=1)
    team: str | None = None
    name: str | None = None
    schedule: str | None = Field(default=None, description="Cron expression; '' removes it.")
    timezone: str | None = None
    enabled: bool | None = None
    arguments: dict[str, Any] | None = None
    retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    retry_delay: float | None = Field(default=None, gt=0, le=MAX_RETRY_DELAY)
    retry_on: RetryOn | None = Field(default=None, strict=False)  # JSON has no enum type
    reason: str | None = None
    run_first: bool = Field(default=False, description="Execute it right after deploying.")

    def changes(self) -> dict[str, Any]:
        """The deployment fields given; those left out keep their deployed values."""
        return self.model_dump(
            include={
                "schedule",
                "timezone",
                "enabled",
                "arguments",
                "retries",
                "retry_delay",
                "retry_on",
                "reason",
            },
            exclude_none=True,
        )
