"""Who is calling: ``nbplane user`` and ``nbplane token`` manage users, teams and tokens, on an
nbplane server through its API (given ``--url``, NBPLANE_URL, or after ``nbplane login``) or on
nbplane's database directly otherwise; ``nbplane login`` and ``nbplane logout`` choose which
server the remote commands talk to, as whom."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table

from nbplane.cli._common import (
    CliConsole,
    DocumentedArgument,
    DocumentedCommand,
    NbplaneGroup,
    confirm,
    output_format,
    output_format_saying,
    print_json,
    print_result,
    yes_option,
)
from nbplane.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from nbplane.auth.admin import ManageAuth
    from nbplane.auth.models import (
        DescribeCaller,
        DescribeLogin,
        DescribeOAuth,
        DescribeToken,
        DescribeUser,
        ExchangeOAuthToken,
    )

DEFAULT_URL = "http://127.0.0.1:5050"
Shown = TypeVar("Shown", bound=BaseModel)
Model = TypeVar("Model", bound=BaseModel)


@contextmanager
def _manage(url: str | None, token: str | None, local: bool) -> Iterator[ManageAuth]:
    """The server's API when a server is named (``--url``, NBPLANE_URL, a saved login) and
    ``--local`` is not given, else the database NBPLANE_STORE_URL names, managed as its admin."""
    from nbplane.settings import get_settings

    if local and (url or token):
        raise ConfigError("pass --local or --url/--token, not both", field="local")
    if not local and (url or get_settings().url or _logged_in()):
        from nbplane.client import NbplaneClient

        with NbplaneClient.from_credentials(url, token) as client:
            yield client
        return
    from nbplane.auth.admin import LOCAL_ADMIN, AuthAdmin
    from nbplane.auth.service import open_auth

    with open_auth(get_settings().resolved_store_url) as auth:
        yield AuthAdmin(auth, LOCAL_ADMIN)


def _logged_in() -> bool:
    from nbplane.client import load_login

    return load_login() is not None


def managing(command: Callable[..., None]) -> Callable[..., None]:
    """The command's first argument is what it manages: a server or the local database, chosen
    by the ``--url``, ``--token`` and ``--local`` options this adds."""

    @click.option(
        "--url",
        help="The nbplane server to manage (default: NBPLANE_URL, then the server of `nbplane "
        "login`; with neither, the local database NBPLANE_STORE_URL).",
    )
    @click.option(
        "--token",
        "bearer",
        metavar="TOKEN",
        help="Bearer token for that server (default: NBPLANE_TOKEN, then the saved login's).",
    )
    @click.option(
        "--local",
        is_flag=True,
        help="Manage the local database (NBPLANE_STORE_URL) even when logged in to a server.",
    )
    @functools.wraps(command)
    def wrapper(url: str | None, bearer: str | None, local: bool, **options: Any) -> None:
        with _manage(url, bearer, local) as manage:
            command(manage, **options)

    return wrapper


def _checked(model: type[Model], **values: Any) -> Model:
    """The request model, or the first problem as an error naming its field."""
    try:
        return model(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InvalidInput(f"{where}: {problem['msg']}", field=where or None) from None


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
    CliConsole().print(table)


def _say(output: str, message: str, described: BaseModel | dict[str, Any]) -> None:
    """A change's line for people, or (``--output json``) the changed user as it is now."""
    facts = described.model_dump(mode="json") if isinstance(described, BaseModel) else described
    print_result(output, escape(message), facts)


# -- nbplane user

user_name = click.argument("name", cls=DocumentedArgument, description="The user's name.")
team_name = click.argument(
    "team", cls=DocumentedArgument, description="The team (created on first member)."
)
USER_COLUMNS: dict[str, Callable[[DescribeUser], str]] = {
    "name": lambda described: described.name,
    "admin": lambda described: "yes" if described.admin else "",
    "teams": lambda described: ", ".join(described.teams),
    "max sessions": lambda described: (
        "default" if described.max_sessions is None else str(described.max_sessions)
    ),
    "created": lambda described: f"{described.created_at:%Y-%m-%d %H:%M}",
}


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def user() -> None:
    """Users and teams: a token speaks for a user, who sees the jobs of their teams. On a
    server (--url, NBPLANE_URL or `nbplane login`) only admins manage users."""


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
@output_format
@managing
def create_user(
    manage: ManageAuth,
    name: str,
    admin: bool,
    teams: tuple[str, ...],
    max_sessions: int | None,
    output: str,
) -> None:
    """Create a user; give them a token with `nbplane token create NAME --user USER`."""
    from nbplane.auth.models import CreateUser

    request = _checked(
        CreateUser, name=name, admin=admin, teams=list(teams), max_sessions=max_sessions
    )
    created = manage.create_user(request)
    joined = f" in {', '.join(teams)}" if teams else ""
    _say(output, f"user {name} created{' (admin)' if admin else ''}{joined}", created)


@user.command("list")
@output_format
@managing
def list_users(manage: ManageAuth, output: str) -> None:
    """List users, whether they are admins, and their teams."""
    _show(output, "users", manage.list_users(), USER_COLUMNS)


@user.command()
@user_name
@output_format
@managing
def show(manage: ManageAuth, name: str, output: str) -> None:
    """Show a user: admin or not, teams, session limit."""
    described = manage.get_user(name)
    if output == "json":
        print_json(described.model_dump(mode="json"))
    else:
        _show(output, f"user {name}", [described], USER_COLUMNS)


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
@output_format
@managing
def limit(
    manage: ManageAuth, name: str, max_sessions: int | None, use_default: bool, output: str
) -> None:
    """Set how many sessions a user may run at once (above or below the server's default)."""
    from nbplane.auth.models import UpdateUser

    if (max_sessions is None) == (not use_default):
        raise click.UsageError("give either --max-sessions N or --default")
    changed = manage.update_user(name, _checked(UpdateUser, max_sessions=max_sessions))
    what = "the server's default" if max_sessions is None else str(max_sessions)
    _say(output, f"{name} may run {what} session(s) at once", changed)


@user.command("admin")
@user_name
@click.option("--revoke", is_flag=True, help="Take the admin rights away instead.")
@output_format
@managing
def make_admin(manage: ManageAuth, name: str, revoke: bool, output: str) -> None:
    """Make a user an admin (or, with --revoke, a plain user again; never the last admin)."""
    from nbplane.auth.models import UpdateUser

    changed = manage.update_user(name, UpdateUser(admin=not revoke))
    _say(output, f"{name} is {'no longer ' if revoke else ''}an admin", changed)


@user.command()
@user_name
@team_name
@output_format
@managing
def join(manage: ManageAuth, name: str, team: str, output: str) -> None:
    """Add a user to a team."""
    _say(output, f"{name} is in team {team}", manage.join_team(name, team))


@user.command()
@user_name
@team_name
@output_format
@managing
def leave(manage: ManageAuth, name: str, team: str, output: str) -> None:
    """Remove a user from a team."""
    _say(output, f"{name} is not in team {team}", manage.leave_team(name, team))


@user.command()
@user_name
@yes_option
@output_format
@managing
def delete(manage: ManageAuth, name: str, yes: bool, output: str) -> None:
    """Delete a user with their tokens and team memberships (never the last admin); their jobs
    and sessions stay."""
    confirm(f"delete user {name} and their tokens?", yes, "refusing to delete a user")
    manage.delete_user(name)
    _say(output, f"user {name} deleted", {"name": name, "deleted": True})


@user.command()
@output_format
@managing
def teams(manage: ManageAuth, output: str) -> None:
    """List teams with their members (on a server, a plain user sees their own teams)."""
    _show(
        output,
        "teams",
        manage.list_teams(),
        {
            "team": lambda described: described.name,
            "members": lambda described: ", ".join(described.members),
        },
    )


@user.command()
@click.option(
    "--user",
    "name",
    help="The admin user (default: NBPLANE_ADMIN_USER, else admin).",
)
@output_format
def bootstrap(name: str | None, output: str) -> None:
    """Make sure the first admin exists and holds the token NBPLANE_ADMIN_TOKEN holds (else
    the first line of stdin), in the database NBPLANE_STORE_URL names: what a server does at
    each start, for a deployment's Job or a script. Never takes the token as an argument."""
    from pydantic import SecretStr

    from nbplane.auth.admin import bootstrap_admin
    from nbplane.auth.service import AuthService
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    settings = get_settings()
    changes: dict[str, Any] = {"admin_user": name} if name else {}
    if settings.admin_token is None:
        if sys.stdin.isatty():
            raise ConfigError(
                "no token: set NBPLANE_ADMIN_TOKEN or pipe it in, e.g. "
                "`nbplane user bootstrap < token.txt`",
                field="admin_token",
            )
        changes["admin_token"] = SecretStr(sys.stdin.readline())
    settings = settings.model_copy(update=changes)
    store = open_store(settings.resolved_store_url)
    try:
        bootstrap_admin(AuthService(store), settings)
    finally:
        store.close()
    _say(
        output,
        f"{settings.admin_user} is an admin holding the token 'bootstrap'",
        {"user": settings.admin_user, "admin": True, "token": "bootstrap"},
    )


# -- nbplane token


@click.group(cls=NbplaneGroup)
def token() -> None:
    """Bearer tokens of the API (kept hashed in nbplane's database). On a server (--url,
    NBPLANE_URL or `nbplane login`) a user manages their own, an admin anyone's."""


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
    help="The user the token speaks for (see `nbplane user`); default: you on a server, the "
    "admin user (made on first use) on the local database.",
)
@click.option(
    "--expires-in",
    callback=lifetime,
    metavar="DURATION",
    help="How long the token works, e.g. 30d, 12h or 90m (default: until revoked); after "
    "that every request with it is refused as expired.",
)
@output_format_saying(
    "table: the token alone on stdout (what it is, on stderr); json: the token's name, user, "
    "expiry and the token itself."
)
@managing
def create_token(
    manage: ManageAuth, name: str, user: str | None, expires_in: timedelta | None, output: str
) -> None:
    """Create a token and print it once; keep it, it cannot be shown again."""
    from nbplane.auth.models import CreateToken

    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    made = manage.create_token(_checked(CreateToken, name=name, user=user, expires_at=expires_at))
    if output == "json":
        print_json(made.model_dump(mode="json"))
        return
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    CliConsole(stderr=True).print(
        f"token {escape(made.name)} of user {escape(made.user or '')} created{until}; use it "
        "as `Authorization: Bearer <token>`:",
        highlight=False,
    )
    print(made.token)


@token.command("list")
@click.option("--user", help="Only this user's tokens (default: all, or yours on a server).")
@output_format
@managing
def list_tokens(manage: ManageAuth, user: str | None, output: str) -> None:
    """List tokens (their names and first characters, never the secrets)."""
    tokens = manage.list_tokens(user)
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
            "user": lambda described: described.user or "",
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
@output_format
@managing
def revoke(manage: ManageAuth, name: str, output: str) -> None:
    """Revoke a token by name; requests with it are refused from then on."""
    manage.revoke_token(name)
    print_result(output, f"token {escape(name)} revoked", {"name": name, "revoked": True})


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
    "--sso",
    "--oidc",
    "--oauth",
    "sso",
    is_flag=True,
    help="Instead of a token, log in through the server's authenticator (NBPLANE_AUTHENTICATOR): "
    "oidc in the browser at its provider (authorization code with PKCE; the browser's address "
    "is printed too, for a machine without one), header through the gateway at --url, app with "
    "--source-token; the server then gives you a token of its own.",
)
@click.option(
    "--source-token",
    metavar="TOKEN",
    help="With --sso and the app authenticator: your token at that application, which the "
    "server asks who you are.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="With --sso at an OpenID Connect provider: seconds to wait for the login in the browser.",
)
@output_format
def login(
    url: str | None,
    token: str | None,
    sso: bool,
    source_token: str | None,
    timeout: float,
    output: str,
) -> None:
    """Log in to an nbplane server for the remote `nbplane job` commands.

    The token is checked with the server (with --sso, the server makes one for whom its
    authenticator says you are), then the URL and token are saved in
    NBPLANE_HOME/credentials.json, readable by you only; NBPLANE_URL and NBPLANE_TOKEN
    override them.
    """
    from nbplane.client import credentials_path, load_login, log_in, normalize_url
    from nbplane.settings import get_settings

    if url is None:
        saved = load_login()
        url = get_settings().url or (saved.url if saved else DEFAULT_URL)
    url = normalize_url(url)
    caller: DescribeCaller | DescribeLogin
    if sso:
        if token is not None:
            raise ConfigError("pass --token or --sso, not both", field="token")
        caller = _sso_login(url, source_token, timeout)
    else:
        caller = log_in(url, _read_token(url, token))
    teams = ", ".join(caller.teams) or "none yet"
    print_result(
        output,
        f"logged in to {escape(url)} as [bold]{escape(caller.user)}[/]"
        + (" (admin)" if caller.admin else "")
        + f"; teams: {escape(teams)}; saved in {escape(str(credentials_path()))}",
        {
            "url": url,
            "user": caller.user,
            "admin": caller.admin,
            "teams": caller.teams,
            "saved": str(credentials_path()),
        },
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


def _sso_login(url: str, source_token: str | None, timeout: float) -> DescribeLogin:
    """The person logs in through the server's authenticator: at its provider in the browser
    (the server trades the provider's tokens for one of its own), or by what this request
    carries (a gateway's header, the application's token)."""
    from nbplane.client import NbplaneClient, log_in_by_request, log_in_with_oauth

    with NbplaneClient(url, None) as client:
        described = client.authenticator()
        if described.browser_login or not described.request_login:
            provider = client.oauth_config()
        else:
            return log_in_by_request(url, source_token)
    return log_in_with_oauth(url, _authorize(provider, timeout))


@click.command(cls=DocumentedCommand)
@output_format
def logout(output: str) -> None:
    """End the login: the server revokes its token if `nbplane login --sso` made it, and the
    saved server and token are forgotten."""
    from nbplane.client import credentials_path, forget_login, log_out

    log_out()
    forgotten = forget_login()
    message = "logged out" if forgotten else "not logged in"
    print_result(
        output,
        f"{message} ({escape(str(credentials_path()))})",
        {"logged_out": forgotten, "path": str(credentials_path())},
    )


def _authorize(provider: DescribeOAuth, timeout: float) -> ExchangeOAuthToken:
    """The provider's tokens, once the person has logged in in their browser (OpenID
    Connect's authorization code flow with PKCE as a native app does it, RFC 8252)."""
    import webbrowser

    from nbplane.auth.pkce import LoopbackRedirect, PkceLogin

    with LoopbackRedirect() as listener:
        pending = PkceLogin(provider, listener.uri)
        CliConsole().print(
            "Log in in your browser; if it does not open, visit:\n" + escape(pending.authorize_url),
            highlight=False,
            soft_wrap=True,
        )
        webbrowser.open(pending.authorize_url)
        redirect = listener.wait(timeout)
    return pending.finish(redirect)
