"""The one exception tree of nbplane.

Every error we raise on purpose is an ``NbplaneError`` carrying structured fields (which file,
cell, step, line), so the CLI, the server and the IPython magics can show it in words and map it
to an exit code or HTTP status in one place each::

    NbplaneError
    ├── ConfigError            a setting, argument or option given by the user is wrong
    ├── JobDefinitionError     a directory is not a runnable job (no steps, bad notebook, no run())
    ├── StepFailed             a step of a job raised; the user's own traceback is kept
    ├── QueryError             a SQL statement failed; names the statement and its line
    ├── IngestionError         rows sent for ingestion could not be written
    ├── StoreError             nbplane's own database cannot be opened or migrated
    ├── NotFound               no such notebook, execution or run (HTTP 404)
    ├── Conflict               it exists but cannot do that now, e.g. a broken notebook (409)
    │   └── ContractError      a notebook API's contract or nbschema model cannot be used
    ├── InvalidInput           parameters do not match the input contract (422); ``errors``
    ├── InvalidOutput          a saved output does not match the output contract; ``errors``
    ├── Unauthorized           no valid bearer token, or an expired one (401)
    ├── Forbidden              known caller, refused request, e.g. no CSRF header (403)
    ├── PayloadTooLarge        a request body over the server's limit (413)
    ├── TooManyRequests        over a per-user limit, e.g. running sessions (429)
    └── Unreachable            a server nbplane forwards to did not answer, e.g. a session's (502)
"""

from __future__ import annotations

from typing import Any


class NbplaneError(Exception):
    """Root of nbplane's errors: a message for people plus fields for programs."""

    exit_code = 2

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {key: value for key, value in fields.items() if value is not None}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, **self.fields}


def _rebuild(cls: type[NbplaneError], message: str, fields: dict[str, Any]) -> NbplaneError:
    return cls(message, **fields)


class ConfigError(NbplaneError):
    """A setting, option or argument given by the user cannot be used."""


class JobDefinitionError(NbplaneError):
    """The directory is not a job nbplane can run."""


class StepFailed(NbplaneError):
    """A step raised: carries where (file, cell, line) and the user's traceback."""

    exit_code = 1


class QueryError(NbplaneError):
    """A SQL statement failed in the job's database."""

    exit_code = 1


class IngestionError(NbplaneError):
    """Rows sent for ingestion could not be written to their table."""

    exit_code = 1


class StoreError(NbplaneError):
    """nbplane's own database cannot be reached or brought up to date."""


class NotFound(NbplaneError):
    """What was asked for (a notebook, an execution, a run) does not exist."""


class Conflict(NbplaneError):
    """The thing exists but cannot do this now (a broken notebook, a finished execution)."""


class Unauthorized(NbplaneError):
    """No valid bearer token came with a request that needs one."""


class Forbidden(NbplaneError):
    """The caller is known but this request is refused: a signed-in browser's change without
    the header only the page's own script sends."""


class ContractError(Conflict):
    """A notebook API's contract, its JSON Schema or an ``nbschema://`` model cannot be used."""


class InvalidInput(NbplaneError):
    """Parameters do not match the input contract; ``errors`` lists every problem as
    ``{"pointer": "/a/0/b", "message": ...}``."""


class InvalidOutput(NbplaneError):
    """The output a notebook saved does not match its output contract; ``errors`` as above."""

    exit_code = 1


class PayloadTooLarge(NbplaneError):
    """A request body is larger than the server accepts (``--max-body``, or the upload limit)."""


class TooManyRequests(NbplaneError):
    """The caller is at a limit (e.g. running sessions per user); the message says what to stop."""


class Unreachable(NbplaneError):
    """A server nbplane stands in front of (a session's Jupyter server) did not answer."""
