"""Values every database keeps and every JSON parser takes: what a notebook or a job printed may
hold a lone surrogate, NUL or NaN, which PostgreSQL, strict JSON and nbplane's own door refuse."""

from __future__ import annotations

import json
import math
from typing import Any


def sendable(value: Any) -> Any:
    """``value`` if it can be sent as JSON in UTF-8 and stored as text, else a copy with each
    lone surrogate and NUL replaced by U+FFFD and each NaN or infinity by null."""
    if isinstance(value, str | float | dict | list):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except ValueError:  # UnicodeEncodeError is one
            return _repaired(value)
        if "\\u0000" in text:
            return _repaired(value)
    return value


def _repaired(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(
            "\ufffd" if "\ud800" <= char <= "\udfff" or char == "\0" else char for char in value
        )
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_repaired(key): _repaired(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_repaired(item) for item in value]
    return value
