"""The ``nbplane`` command: one command tree, one place that turns errors into exit codes."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from nbplane.cli._common import NbplaneGroup
from nbplane.errors import NbplaneError


@click.group(
    cls=NbplaneGroup,
    help="Run Jupyter notebooks as data jobs and as REST APIs.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy_commands={
        "job": "nbplane.cli.jobs:job",
        "api": "nbplane.cli.apis:api",
        "session": "nbplane.cli.sessions:session",
        "connection": "nbplane.cli.sessions:connection",
        "serve": "nbplane.cli.server:serve",
        "worker": "nbplane.cli.server:worker",
        "db": "nbplane.cli.server:db",
        "token": "nbplane.cli.auth:token",
        "user": "nbplane.cli.auth:user",
        "login": "nbplane.cli.auth:login",
        "logout": "nbplane.cli.auth:logout",
    },
)
@click.version_option(package_name="nbplane", prog_name="nbplane", message="%(prog)s %(version)s")
def nbplane() -> None:
    pass


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    try:
        nbplane.main()
    except NbplaneError as exc:
        Console(stderr=True, soft_wrap=True).print(  # one line, for terminals and log readers
            f"[bold red]error:[/] {escape(exc.message)}", highlight=False
        )
        sys.exit(exc.exit_code)
