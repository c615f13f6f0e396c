"""``nbplane login`` and ``nbplane logout``: which server the remote commands talk to, as whom."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from nbplane.cli.commands import DocumentedCommand
from nbplane.errors import ConfigError

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
def login(url: str | None, token: str | None) -> None:
    """Log in to an nbplane server for the remote `nbplane job` commands.

    The token is checked with the server, then the URL and token are saved in
    NBPLANE_HOME/credentials.json, readable by you only; NBPLANE_URL and NBPLANE_TOKEN
    override them.
    """
    from nbplane.client import NbplaneClient, SaveLogin, load_login, normalize_url, save_login
    from nbplane.settings import get_settings

    if url is None:
        saved = load_login()
        url = get_settings().url or (saved.url if saved else DEFAULT_URL)
    url = normalize_url(url)
    if token is None and not sys.stdin.isatty():
        token = sys.stdin.readline()  # piped in: `nbplane login < token.txt`
    if token is None:
        token = click.prompt(f"token for {url}", hide_input=True, err=True)
    token = token.strip()
    if not token:
        raise ConfigError(
            "no token given: pass --token, or create one with `nbplane token create`", field="token"
        )
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


@click.command(cls=DocumentedCommand)
def logout() -> None:
    """Forget the server and token that `nbplane login` saved."""
    from nbplane.client import credentials_path, forget_login

    message = "logged out" if forget_login() else "not logged in"
    Console().print(f"{message} ({escape(str(credentials_path()))})", highlight=False)
