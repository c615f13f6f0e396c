"""How problems with a contract, parameters or an output are worded: each one is a
``{"pointer", "message"}`` (a JSON pointer into the document), messages are kept short, and an
error's text summarises the first few."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nbplane.apis.nbschema import escape_pointer

MESSAGE_LIMIT = 300
SUMMARY_ERRORS = 5


def pointer(path: Iterable[Any]) -> str:
    return "".join("/" + escape_pointer(str(part)) for part in path)


def summary(errors: list[dict[str, str]]) -> str:
    shown = "; ".join(
        f"{error['pointer'] or '(root)'}: {error['message']}" for error in errors[:SUMMARY_ERRORS]
    )
    more = len(errors) - SUMMARY_ERRORS
    return shown + (f" (and {more} more)" if more > 0 else "")


def shorten(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
