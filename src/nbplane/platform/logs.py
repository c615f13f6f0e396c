"""Logging of ``nbplane serve`` and ``nbplane worker``: a level, and text or JSON lines, for
nbplane's loggers, uvicorn's and any other library's (the root logger), with the standard
library's ``dictConfig`` (uvicorn takes the same dictionary as its ``log_config``)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
"""What every log record has (and uvicorn's coloured copy of its message); anything else on a
record was passed as ``extra``: a field."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``extra`` fields,
    and the exception (its traceback as text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in RECORD_ATTRIBUTES and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def logging_config(level: LogLevel, format: LogFormat) -> dict[str, Any]:
    """The ``dictConfig`` of a server or worker: nbplane's and uvicorn's loggers at ``level``,
    other libraries at warning, all on stderr in one format. uvicorn's own access log is left
    off: nbplane writes its own (``nbplane.access``), with the duration and the user."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if format == "json" else {"format": TEXT}
    )
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nbplane": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "nbplane",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "nbplane": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
