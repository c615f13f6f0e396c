"""Who is calling: ``nbplane user`` and ``nbplane token`` administer users, teams and tokens on
nbplane's database directly; ``nbplane login`` and ``nbplane logout`` choose which server the
remote commands talk to, as whom."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import click
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nbplane.cli._common import DocumentedArgument, DocumentedCommand, NbplaneGroup
from nbplane.cli.jobs import output_format, print_json
from nbplane.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from nbplane.auth.models import (
        DescribeCaller,
        DescribeOAuth,
        DescribeOAuthLogin,
        DescribeToken,
    )
    from nbplane.auth.service import AuthService

DEFAULT_URL = "http://127.0.0.1:5050"
Shown = TypeVar("Shown", bound=BaseModel)


@contextmanager
def _auth() -> Iterator[AuthService]:
    """The users and tokens of the database NBPLANE_STORE_URL names."""
    from nbplane.auth.service import open_auth
    from nbplane.settings import get_settings

    with open_auth(get_settings().resolved_store_url) as auth:
        yield auth


def _show(
    output: str, title: str, found: Sequence[Shown], columns: dict[str, Callable[[Shown], str]]
) -> None:
    """A listing as ``--output`` asks: the models as JSON, or a table with these columns."""
    if output == "json":
        print_json([described.model_dump(mode="json") for described in found])
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for described in found:
        table.add_row(*(cell(described) for cell in columns.values()))
    Console().print(table)


# -- nbplane user

user_name = click.argument("name", cls=DocumentedArgument, description="The user's name.")
team_name = click.argument(
    "team", cls=DocumentedArgument, description="The team (created on first member)."
)


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def user() -> None:
    """Users and teams: a token speaks for a user, who sees the jobs of their teams."""


@user.command("create")
@user_name
@click.option("--admin", is_flag=True, help="An admin sees and manages every team's jobs.")
@click.option(
    "--team",
    "teams",
    multiple=True,
    help="A team the user joins; repeat for several.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(min=0),
    default=None,
    help="Sessions the user may have starting or running at once (default: "
    "NBPLANE_SESSION_MAX_PER_USER).",
)
def create_user(name: str, admin: bool, teams: tuple[str, ...], max_sessions: int | None) -> None:
    """Create a user; give them a token with `nbplane token create NAME --user USER`."""
    with _auth() as auth:
        auth.create_user(name, admin=admin, teams=teams, max_sessions=max_sessions)
    joined = f" in {', '.join(teams)}" if teams else ""
    Console().print(
        f"user {escape(name)} created{' (admin)' if admin else ''}{escape(joined)}",
        highlight=False,
    )


@user.command("list")
@output_format
def list_users(output: str) -> None:
    """List users, whether they are admins, and their teams."""
    with _auth() as auth:
        users = auth.list_users()
    _show(
        output,
        "users",
        users,
        {
            "name": lambda described: described.name,
            "admin": lambda described: "yes" if described.admin else "",
            "teams": lambda described: ", ".join(described.teams),
            "max sessions": lambda described: (
                "default" if described.max_sessions is None else str(described.max_sessions)
            ),
            "created": lambda described: f"{described.created_at:%Y-%m-%d %H:%M}",
        },
    )


@user.command()
@user_name
@click.option(
    "--max-sessions",
    type=click.IntRange(min=0),
    default=None,
    help="Sessions the user may have starting or running at once.",
)
@click.option(
    "--default",
    "use_default",
    is_flag=True,
    help="Back to the server's NBPLANE_SESSION_MAX_PER_USER.",
)
def limit(name: str, max_sessions: int | None, use_default: bool) -> None:
    """Set how many sessions a user may run at once (above or below the server's default)."""
    if (max_sessions is None) == (not use_default):
        raise click.UsageError("give either --max-sessions N or --default")
    with _auth() as auth:
        auth.set_max_sessions(name, max_sessions)
    what = "the server's default" if max_sessions is None else str(max_sessions)
    Console().print(f"{escape(name)} may run {what} session(s) at once", highlight=False)


@user.command()
@user_name
@team_name
def join(name: str, team: str) -> None:
    """Add a user to a team."""
    with _auth() as auth:
        auth.join(name, team)
    Console().print(f"{escape(name)} is in team {escape(team)}", highlight=False)


@user.command()
@user_name
@team_name
def leave(name: str, team: str) -> None:
    """Remove a user from a team."""
    with _auth() as auth:
        auth.leave(name, team)
    Console().print(f"{escape(name)} is not in team {escape(team)}", highlight=False)


# -- nbplane token


@click.group(cls=NbplaneGroup)
def token() -> None:
    """Bearer tokens of the API (kept hashed in nbplane's database)."""


UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def lifetime(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """``30d``, ``12h`` or ``90m``: how long a new token works."""
    if value is None:
        return None
    found = re.fullmatch(r"\s*([1-9][0-9]{0,5})\s*([dhm])\s*", value)
    if found is None:
        raise click.BadParameter(f"{value!r} is not a duration like 30d, 12h or 90m")
    return timedelta(**{UNITS[found[2]]: int(found[1])})


@token.command("create")
@click.argument("name")
@click.option(
    "--user",
    default="admin",
    show_default=True,
    help="The user the token speaks for (see `nbplane user`); the admin user is made on first use.",
)
@click.option(
    "--expires-in",
    callback=lifetime,
    metavar="DURATION",
    help="How long the token works, e.g. 30d, 12h or 90m (default: until revoked); after "
    "that every request with it is refused as expired.",
)
def create_token(name: str, user: str, expires_in: timedelta | None) -> None:
    """Create a token and print it once; keep it, it cannot be shown again."""
    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    with _auth() as auth:
        described, secret = auth.create_token(name, user=user, expires_at=expires_at)
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    Console(stderr=True).print(
        f"token {described.name} of user {user} created{until}; use it as "
        "`Authorization: Bearer <token>`:",
        highlight=False,
    )
    print(secret)


@token.command("list")
@output_format
def list_tokens(output: str) -> None:
    """List tokens (their names and first characters, never the secrets)."""
    with _auth() as auth:
        tokens = auth.list_tokens()
    moment = datetime.now(UTC)

    def expires(described: DescribeToken) -> str:
        if described.expires_at is None:
            return ""
        ended = " (expired)" if described.expires_at <= moment else ""
        return f"{described.expires_at:%Y-%m-%d %H:%M}{ended}"

    _show(
        output,
        "API tokens",
        tokens,
        {
            "name": lambda described: described.name,
            "starts with": lambda described: described.prefix + "…",
            "created": lambda described: f"{described.created_at:%Y-%m-%d %H:%M}",
            "expires": expires,
            "revoked": lambda described: (
                f"{described.revoked_at:%Y-%m-%d %H:%M}" if described.revoked_at else ""
            ),
        },
    )


@token.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a token by name; requests with it are refused from then on."""
    with _auth() as auth:
        if not auth.revoke_token(name):
            raise NotFound(f"no live token named {name!r}", field="name")
    Console(stderr=True).print(f"token {name} revoked", highlight=False)


# -- nbplane login, nbplane logout


@click.command(cls=DocumentedCommand)
@click.option(
    "--url",
    help="The nbplane server, e.g. https://nbplane.example.com (default: NBPLANE_URL, then the "
    f"server of the last login, then {DEFAULT_URL}).",
)
@click.option(
    "--token",
    help="A bearer token from `nbplane token create` (default: the first line of stdin when it "
    "is not a terminal, else asked for without echo; both keep it out of the shell history).",
)
@click.option(
    "--oauth",
    is_flag=True,
    help="Instead of a token, log in in the browser at the server's OAuth2 provider "
    "(authorization code with PKCE); the server then gives you a token of its own. The "
    "browser's address is printed too, for a machine without one.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="With --oauth: seconds to wait for the login in the browser.",
)
def login(url: str | None, token: str | None, oauth: bool, timeout: float) -> None:
    """Log in to an nbplane server for the remote `nbplane job` commands.

    The token is checked with the server (with --oauth, the server makes one for whom its
    OAuth2 provider says you are), then the URL and token are saved in
    NBPLANE_HOME/credentials.json, readable by you only; NBPLANE_URL and NBPLANE_TOKEN
    override them.
    """
    from nbplane.client import credentials_path, load_login, log_in, normalize_url
    from nbplane.settings import get_settings

    if url is None:
        saved = load_login()
        url = get_settings().url or (saved.url if saved else DEFAULT_URL)
    url = normalize_url(url)
    caller: DescribeCaller | DescribeOAuthLogin
    if oauth:
        if token is not None:
            raise ConfigError("pass --token or --oauth, not both", field="token")
        caller = _oauth_login(url, timeout)
    else:
        caller = log_in(url, _read_token(url, token))
    teams = ", ".join(caller.teams) or "none yet"
    Console().print(
        f"logged in to {escape(url)} as [bold]{escape(caller.user)}[/]"
        + (" (admin)" if caller.admin else "")
        + f"; teams: {escape(teams)}; saved in {escape(str(credentials_path()))}",
        highlight=False,
    )


def _read_token(url: str, token: str | None) -> str:
    if token is None and not sys.stdin.isatty():
        token = sys.stdin.readline()  # piped in: `nbplane login < token.txt`
    if token is None:
        token = click.prompt(f"token for {url}", hide_input=True, err=True)
    token = token.strip()
    if not token:
        raise ConfigError(
            "no token given: pass --token, or create one with `nbplane token create`", field="token"
        )
    return token


def _oauth_login(url: str, timeout: float) -> DescribeOAuthLogin:
    """The person logs in at the server's provider; the server trades the provider's access
    token for one of its own."""
    from nbplane.client import NbplaneClient, log_in_with_oauth

    with NbplaneClient(url, None) as client:
        provider = client.oauth_config()
    return log_in_with_oauth(url, _authorize(provider, timeout))


@click.command(cls=DocumentedCommand)
def logout() -> None:
    """Forget the server and token that `nbplane login` saved."""
    from nbplane.client import credentials_path, forget_login

    message = "logged out" if forget_login() else "not logged in"
    Console().print(f"{message} ({escape(str(credentials_path()))})", highlight=False)


def _authorize(provider: DescribeOAuth, timeout: float) -> str:
    """The provider's access token, once the person has logged in in their browser (OAuth2's
    authorization code flow with PKCE as a native app does it, RFC 8252)."""
    import webbrowser

    from nbplane.auth.pkce import LoopbackRedirect, PkceLogin

    with LoopbackRedirect() as listener:
        pending = PkceLogin(provider, listener.uri)
        Console().print(
            "Log in in your browser; if it does not open, visit:\n" + escape(pending.authorize_url),
            highlight=False,
            soft_wrap=True,
        )
        webbrowser.open(pending.authorize_url)
        redirect = listener.wait(timeout)
    return pending.finish(redirect)
