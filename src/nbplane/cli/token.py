"""``nbplane token``: bearer tokens for the server's API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from nbplane.cli._common import NbplaneGroup
from nbplane.errors import NotFound

if TYPE_CHECKING:
    from nbplane.store import Store


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


def _tokens() -> Store:
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    return open_store(get_settings().resolved_store_url)


@token.command()
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
def create(name: str, user: str, expires_in: timedelta | None) -> None:
    """Create a token and print it once; keep it, it cannot be shown again."""
    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    store = _tokens()
    try:
        described, secret = store.tokens.create(name, user=user, expires_at=expires_at)
    finally:
        store.close()
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    Console(stderr=True).print(
        f"token {described.name} of user {user} created{until}; use it as "
        "`Authorization: Bearer <token>`:",
        highlight=False,
    )
    print(secret)


@token.command("list")
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
def list_tokens(output: str) -> None:
    """List tokens (their names and first characters, never the secrets)."""
    store = _tokens()
    try:
        tokens = store.tokens.all()
    finally:
        store.close()
    if output == "json":
        print(json.dumps([t.model_dump(mode="json") for t in tokens], indent=2))
        return
    table = Table(title="API tokens", title_justify="left")
    for column in ("name", "starts with", "created", "expires", "revoked"):
        table.add_column(column)
    moment = datetime.now(UTC)
    for t in tokens:
        expires = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else ""
        if t.expires_at and t.expires_at <= moment:
            expires += " (expired)"
        table.add_row(
            t.name,
            t.prefix + "…",
            f"{t.created_at:%Y-%m-%d %H:%M}",
            expires,
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    Console().print(table)


@token.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a token by name; requests with it are refused from then on."""
    store = _tokens()
    try:
        if not store.tokens.revoke(name):
            raise NotFound(f"no live token named {name!r}", field="name")
    finally:
        store.close()
    Console(stderr=True).print(f"token {name} revoked", highlight=False)
