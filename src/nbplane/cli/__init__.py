"""The ``nbplane`` command: one command tree, one place that turns errors into exit codes."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from nbplane.cli._common import NbplaneGroup
from nbplane.cli.auth import login, logout, token, user
from nbplane.cli.deployments import REMOTE_COMMANDS
from nbplane.cli.jobs import job
from nbplane.cli.server import serve, worker
from nbplane.cli.sessions import connection, session
from nbplane.errors import NbplaneError


@click.group(
    cls=NbplaneGroup,
    help="Run Jupyter notebooks as data jobs and as REST APIs.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def nbplane() -> None:
    pass


for command in (job, session, connection, serve, worker, token, user, login, logout):
    nbplane.add_command(command)
for command in REMOTE_COMMANDS:
    job.add_command(command)


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    try:
        nbplane.main()
    except NbplaneError as exc:
        Console(stderr=True, soft_wrap=True).print(  # one line, for terminals and log readers
            f"[bold red]error:[/] {escape(exc.message)}", highlight=False
        )
        sys.exit(exc.exit_code)
