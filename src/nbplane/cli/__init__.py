"""The ``nbplane`` command: one command tree, one place that turns errors into exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from nbplane.cli.job import job_app
from nbplane.errors import NbplaneError

app = typer.Typer(
    name="nbplane",
    help="Run Jupyter notebooks as data jobs: steps, SQL cells, job_input, resume.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(job_app, name="job")


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    try:
        app()
    except NbplaneError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        sys.exit(exc.exit_code)
