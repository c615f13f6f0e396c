"""``nbplane login`` and ``nbplane logout``: which server the remote commands talk to, as whom."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from nbplane.cli._common import DocumentedCommand
from nbplane.errors import ConfigError

if TYPE_CHECKING:
    from nbplane.auth.oauth import DescribeOAuthLogin
    from nbplane.deployments.models import DescribeCaller

DEFAULT_URL = "http://127.0.0.1:5050"


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
    from nbplane.client import NbplaneClient, SaveLogin, load_login, normalize_url, save_login
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
        token = caller.token
    else:
        token = _read_token(url, token)
        with NbplaneClient(url, token) as client:
            caller = client.me()
    path = save_login(SaveLogin(url=url, token=token))
    teams = ", ".join(caller.teams) or "none yet"
    Console().print(
        f"logged in to {escape(url)} as [bold]{escape(caller.user)}[/]"
        + (" (admin)" if caller.admin else "")
        + f"; teams: {escape(teams)}; saved in {escape(str(path))}",
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
    from nbplane.cli.oauth import authorize
    from nbplane.client import NbplaneClient

    with NbplaneClient(url, None) as client:
        provider = client.oauth_config()
        access_token = authorize(provider, timeout)
        return client.oauth_login(access_token)


@click.command(cls=DocumentedCommand)
def logout() -> None:
    """Forget the server and token that `nbplane login` saved."""
    from nbplane.client import credentials_path, forget_login

    message = "logged out" if forget_login() else "not logged in"
    Console().print(f"{message} ({escape(str(credentials_path()))})", highlight=False)
