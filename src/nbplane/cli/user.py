"""``nbplane user``: users and their teams, administered on nbplane's database directly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nbplane.cli._common import DocumentedArgument, NbplaneGroup
from nbplane.cli.jobs import output_format
from nbplane.client.deploy import checked_name

if TYPE_CHECKING:
    from nbplane.store import Store

user_name = click.argument("name", cls=DocumentedArgument, description="The user's name.")
team_name = click.argument(
    "team", cls=DocumentedArgument, description="The team (created on first member)."
)


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def user() -> None:
    """Users and teams: a token speaks for a user, who sees the jobs of their teams."""


def _store() -> Store:
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    return open_store(get_settings().resolved_store_url)


@user.command()
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
def create(name: str, admin: bool, teams: tuple[str, ...], max_sessions: int | None) -> None:
    """Create a user; give them a token with `nbplane token create NAME --user USER`."""
    teams = tuple(checked_name(team, "team", "team") for team in teams)
    store = _store()
    try:
        store.control.create_user(name, admin=admin, max_sessions=max_sessions)
        for team in teams:
            store.control.add_member(name, team)
    finally:
        store.close()
    joined = f" in {', '.join(teams)}" if teams else ""
    Console().print(
        f"user {escape(name)} created{' (admin)' if admin else ''}{escape(joined)}",
        highlight=False,
    )


@user.command("list")
@output_format
def list_users(output: str) -> None:
    """List users, whether they are admins, and their teams."""
    store = _store()
    try:
        users = store.control.list_users()
    finally:
        store.close()
    if output == "json":
        print(json.dumps([u.model_dump(mode="json") for u in users], indent=2))
        return
    table = Table(title="users", title_justify="left")
    for column in ("name", "admin", "teams", "max sessions", "created"):
        table.add_column(column)
    for described in users:
        table.add_row(
            described.name,
            "yes" if described.admin else "",
            ", ".join(described.teams),
            "default" if described.max_sessions is None else str(described.max_sessions),
            f"{described.created_at:%Y-%m-%d %H:%M}",
        )
    Console().print(table)


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
    store = _store()
    try:
        store.control.set_max_sessions(name, max_sessions)
    finally:
        store.close()
    what = "the server's default" if max_sessions is None else str(max_sessions)
    Console().print(f"{escape(name)} may run {what} session(s) at once", highlight=False)


@user.command()
@user_name
@team_name
def join(name: str, team: str) -> None:
    """Add a user to a team."""
    team = checked_name(team, "team", "team")
    store = _store()
    try:
        store.control.add_member(name, team)
    finally:
        store.close()
    Console().print(f"{escape(name)} is in team {escape(team)}", highlight=False)


@user.command()
@user_name
@team_name
def leave(name: str, team: str) -> None:
    """Remove a user from a team."""
    store = _store()
    try:
        store.control.remove_member(name, team)
    finally:
        store.close()
    Console().print(f"{escape(name)} is not in team {escape(team)}", highlight=False)
