"""click building blocks every ``nbplane`` command group uses, so help reads the same."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
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
    arguments, prints its help to stdout and exits with 2 (the same on every click 8).

    ``lazy_commands`` names commands as ``"module:attribute"``, listed after the defined ones
    and imported only when used: ``nbplane job run`` then never imports the server, the HTTP
    client or the commands of other nouns before its first step.
    """

    command_class = DocumentedCommand

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self._imported: dict[str, click.Command] = {}

    def get_short_help_str(self, limit: int = 45) -> str:
        return super().get_short_help_str(limit=sys.maxsize)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *(name for name in self.lazy_commands if name not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        if cmd_name not in self._imported:
            module, _, attribute = self.lazy_commands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
            self._imported[cmd_name] = command
        return self._imported[cmd_name]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(2)
        return super().parse_args(ctx, args)
