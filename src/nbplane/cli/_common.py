"""click building blocks every ``nbplane`` command group uses, so help, ``--output``, piped
output and confirmations read and behave the same in every command."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from nbplane.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

FORMATS = ("table", "json")
EXIT_CODES = {"completed": 0, "cancelled": 130}
"""Exit code of a command that waited for an execution, by its final status (as ``job run``);
anything else (failed, timed out, not over yet) is 1."""
Command = TypeVar("Command", bound=Callable[..., Any])


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
    arguments, prints its help to stdout and exits with 0 (the same on every click 8: asking
    what a command offers is not an error).

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
            ctx.exit(0)
        return super().parse_args(ctx, args)


def output_format_saying(help: str) -> Callable[[Command], Command]:
    """``-o/--output table|json``: the one meaning ``-o`` has in every command (as in kubectl
    and gh); a file or directory to write has an option of its own (``--to``). ``help`` says
    what each format shows, where a command says more than the default."""

    def decorate(command: Command) -> Command:
        return click.option(
            "-o",
            "--output",
            type=click.Choice(FORMATS),
            default="table",
            show_default=True,
            help=help,
        )(command)

    return decorate


output_format = output_format_saying("table for people, json for scripts.")


def output_format_or_path(command: Command) -> Command:
    """``-o/--output`` of a command that once took the path to write there: a format, or, for
    scripts written before, still the path (``--to`` then), with a note on stderr."""
    return click.option(
        "-o",
        "--output",
        default="table",
        show_default=True,
        metavar="[table|json]",
        help="table for people, json for scripts (a path here is deprecated: use --to).",
    )(command)


def split_output(output: str, to: Path | None) -> tuple[str, Path | None]:
    """The format and the path of :func:`output_format_or_path`'s command."""
    if output in FORMATS:
        return output, to
    if to is not None:
        raise ConfigError(f"--output {output!r}: expected table or json", field="output")
    click.echo(f"note: -o/--output PATH is deprecated; use --to {output}", err=True)
    return "table", Path(output)


def print_json(value: object) -> None:
    """What ``--output json`` prints: indented, for people reading it as well as scripts."""
    print(json.dumps(value, indent=2))


def print_result(output: str, message: str, facts: Mapping[str, Any]) -> None:
    """What a command that did one thing prints: a line for people (rich markup), or what it
    did as JSON (``--output json``), so a script need not parse the line."""
    if output == "json":
        print_json(dict(facts))
        return
    CliConsole().print(message, highlight=False)


def confirm(question: str, yes: bool, refused: str) -> None:
    """Ask before destroying something, the same way in every command: ``--yes`` skips the
    question; without a terminal to ask on, refuse (exit 2) rather than guess."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"{refused} without a terminal to ask on: pass --yes", field="yes")
    click.confirm(question, abort=True, err=True)


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


class CliConsole(Console):
    """The console commands print to. On a terminal, as rich draws; piped or redirected, lines
    are never wrapped and tables are plain rows (a header, then tab-separated cells), so a CI
    log can be grepped and a table cut into columns; a table's title goes to stderr then."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not self.is_terminal:
            self.soft_wrap = True

    def print(self, *objects: Any, **options: Any) -> None:
        # rich.table is imported by whoever makes a table (`job run` only once its steps are
        # done): until then nothing printed can be one
        tables = sys.modules.get("rich.table")
        if self.is_terminal or tables is None:
            super().print(*objects, **options)
            return
        for shown in objects:
            if isinstance(shown, tables.Table):
                if shown.title:
                    print(plain(shown.title), file=sys.stderr, flush=True)
                self.file.write("".join(line + "\n" for line in plain_rows(shown)))
                self.file.flush()
            else:
                super().print(shown, **options)


def plain(cell: Any) -> str:
    """A cell's text without its markup, on one line."""
    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return text.replace("\t", " ").replace("\n", " ")


def plain_rows(table: Table) -> list[str]:
    """A table's header (when it shows one) and rows as tab-separated plain text."""
    columns = [[plain(cell) for cell in column.cells] for column in table.columns]
    rows = ["\t".join(plain(column.header) for column in table.columns)] * table.show_header
    return rows + ["\t".join(row) for row in zip(*columns, strict=True)]
