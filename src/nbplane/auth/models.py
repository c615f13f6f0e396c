"""What nbplane tells about who is calling: users, their teams, API tokens, OAuth logins."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nbplane.jobs.models import UtcDatetime
from nbplane.platform.names import check_name

ADMIN = "admin"
"""The built-in admin user: a token made without ``--user`` speaks for it."""
BOOTSTRAP_TOKEN = "bootstrap"
"""Name of the token NBPLANE_ADMIN_TOKEN sets at each server start."""
ADMIN_TOKEN_MIN_LENGTH = 32
CSRF_HEADER = "X-Nbplane-Csrf"
"""Any non-empty value: a request that changes something on the strength of a browser's
ambient sign-in (nbplane's cookie, a gateway's header, an application's cookie) needs it; only a
script of the page's origin, or a CLI, adds it."""

USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,254}$"
"""Names of users made through the API or the CLI (an e-mail address fits); OAuth logins keep
whatever name their provider gives."""
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+:-]{0,254}$"

UserName = Annotated[
    str,
    Field(
        pattern=USER_NAME_PATTERN,
        description="1-255 letters, digits, '_', '.', '@', '+', '-', starting with a letter or "
        "digit.",
    ),
]
TeamName = Annotated[
    str,
    AfterValidator(lambda value: check_name(value, "team")),
    Field(description="1-63 lowercase letters, digits, '_', '.', '-'."),
]


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


class CreateUser(BaseModel):
    """Body of ``POST /api/v1/users`` (admins), and what ``nbplane user create`` sends. Strict:
    a ``"5"`` or ``"true"`` where a number or a boolean belongs is refused, not guessed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: UserName
    admin: bool = Field(default=False, description="An admin sees and manages every team.")
    teams: list[TeamName] = Field(default_factory=list, max_length=100)
    max_sessions: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Running sessions this user may have at once (None: the server's default).",
    )


class UpdateUser(BaseModel):
    """Body of ``PATCH /api/v1/users/{user}`` (admins): only the fields given change;
    ``max_sessions: null`` goes back to the server's default."""

    model_config = ConfigDict(extra="forbid", strict=True)

    admin: bool | None = None
    max_sessions: int | None = Field(default=None, ge=0, le=10_000)


class DescribeTeam(BaseModel):
    """A team: it exists while it has a member or a job."""

    name: str
    members: list[str]


class DescribeToken(BaseModel):
    id: int
    name: str
    user: str | None = Field(default=None, description="Whom it speaks for.")
    prefix: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None = None
    revoked_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None


class CreateToken(BaseModel):
    """Body of ``POST /api/v1/tokens``: a user makes tokens of their own, an admin of anyone."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=TOKEN_NAME_PATTERN,
        description="Unique among all tokens: 1-255 letters, digits, '_', '.', '@', '+', ':', '-'.",
    )
    user: str | None = Field(
        default=None, max_length=255, description="Whom it speaks for (default: the caller)."
    )
    expires_at: UtcDatetime | None = Field(
        default=None, description="When it stops working, in the future (default: never)."
    )


class DescribeNewToken(DescribeToken):
    """A token just made: the secret is in this answer only, it is never shown again."""

    token: str


class DescribeOAuth(BaseModel):
    """``GET /api/v1/auth/oauth``: where ``nbplane login --oauth`` sends the person, as whom."""

    authorize_url: str
    token_url: str
    client_id: str
    scopes: str


class ExchangeOAuthToken(BaseModel):
    """Body of ``POST /api/v1/auth/oauth/token``."""

    model_config = ConfigDict(extra="forbid")

    access_token: str = Field(
        min_length=1, max_length=8192, description="An access token from the provider."
    )
    id_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=16384,
        description="The OpenID Connect ID token of the login, checked against the provider's "
        "keys (issuer, audience, expiry, nonce); needed when the server has an issuer.",
    )
    refresh_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        description="The login's refresh token: the server renews the login with it, and the "
        "nbplane token ends when the provider refuses.",
    )
    nonce: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The nonce the login was started with; the ID token must hold it.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Name of the new nbplane token (default: oauth-USER-<random>).",
    )


class DescribeLogin(BaseModel):
    """A new nbplane token for the identity source's user; the secret is shown this once."""

    token: str
    user: str
    admin: bool
    teams: list[str]
    authenticator: str = Field(description="The authenticator the login went through.")
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the token stops working (None: until revoked)."
    )


class LogIn(BaseModel):
    """Body of ``POST /api/v1/auth/login``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        pattern=TOKEN_NAME_PATTERN,
        description="Name of the new nbplane token (default: login-AUTHENTICATOR-USER-<random>).",
    )


class DescribeLogout(BaseModel):
    """``POST /api/v1/auth/logout``: what ended."""

    revoked: bool = Field(
        description="The caller's token was a login's and is revoked (a token from `nbplane "
        "token create` is kept: revoke it with `nbplane token revoke`)."
    )
    logout_url: str | None = Field(
        default=None, description="Where a browser also ends its login at the identity source."
    )


class DescribeAuthenticator(BaseModel):
    """``GET /api/v1/auth``: how people log in to this server besides nbplane's own tokens."""

    name: str = Field(description="NBPLANE_AUTHENTICATOR: token, oidc, header, app or a plugin.")
    provider: str = Field(description="What a sign-in button calls the identity source.")
    browser_login: bool = Field(
        description="A browser signs in at /nbplane/login (the console's sign-in button)."
    )
    request_login: bool = Field(
        description="`POST /api/v1/auth/login` makes a token for whom the request itself "
        "identifies (a gateway's header, an application's cookie or token)."
    )
