"""click building blocks every ``nbplane`` command group uses, so help reads the same."""

from __future__ import annotations

import sys
from typing import Any

import click


class DocumentedArgument(click.Argument):
    """A positional argument with a help text, listed under "Arguments" in ``--help``.

    Kept apart from ``click.Argument(help=...)``, which only click 8.5 and later accept.
    """

    def __init__(self, param_decls: list[str], *, description: str, **attrs: Any) -> None:
        super().__init__(param_decls, **attrs)
        self.description = description


class DocumentedCommand(click.Command):
    """A command whose help lists its arguments and whose summary in a group is never cut."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return super().get_short_help_str(limit=sys.maxsize)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (param.human_readable_name, param.description + ("  [required]" * param.required))
            for param in self.get_params(ctx)
            if isinstance(param, DocumentedArgument)
        ]
        if rows:
            with formatter.section("Arguments"):
                formatter.write_dl(rows)
        super().format_options(ctx, formatter)


class NbplaneGroup(click.Group):
    """A group that lists its commands in the order they were defined and, called without
    arguments, prints its help to stdout and exits with 2 (the same on every click 8)."""

    command_class = DocumentedCommand

    def get_short_help_str(self, limit: int = 45) -> str:
        return super().get_short_help_str(limit=sys.maxsize)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(2)
        return super().parse_args(ctx, args)
