"""What nbplane tells about who is calling: users, their teams, API tokens, OAuth logins."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from nbplane.jobs.models import UtcDatetime

ADMIN = "admin"
"""The built-in admin user: a token made without ``--user`` speaks for it."""


class DescribeUser(BaseModel):
    name: str
    admin: bool
    teams: list[str]
    created_at: UtcDatetime
    max_sessions: int | None = Field(
        default=None,
        description="Running sessions this user may have at once (None: "
        "NBPLANE_SESSION_MAX_PER_USER).",
    )


class DescribeCaller(BaseModel):
    """``GET /api/v1/me``: who a token belongs to."""

    user: str
    admin: bool
    teams: list[str]
    token: str | None = None
    token_expires_at: UtcDatetime | None = Field(
        default=None, description="When the token stops working (None: until revoked)."
    )

    def can_use(self, team: str) -> bool:
        return self.admin or team in self.teams


class DescribeToken(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: UtcDatetime | None = None


class DescribeOAuth(BaseModel):
    """``GET /api/v1/auth/oauth``: where ``nbplane login --oauth`` sends the person, as whom."""

    authorize_url: str
    token_url: str
    client_id: str
    scopes: str


class ExchangeOAuthToken(BaseModel):
    """Body of ``POST /api/v1/auth/oauth/token``."""

    model_config = ConfigDict(extra="forbid")

    access_token: str = Field(min_length=1, description="An access token from the provider.")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Name of the new nbplane token (default: oauth-USER-<random>).",
    )


class DescribeOAuthLogin(BaseModel):
    """A new nbplane token for the provider's user; the secret is shown this once."""

    token: str
    user: str
    admin: bool
    teams: list[str]
