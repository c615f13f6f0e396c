"""Job archives: the zip of ``nbplane job export``, checked before it is kept and unpacked
safely where an execution runs."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from nbplane.errors import InvalidInput, NbplaneError
from nbplane.jobs.definition import JobConfig, load_job

MAX_UNPACKED_BYTES = 512 * 1024 * 1024


def version_id(archive: bytes) -> str:
    return hashlib.sha256(archive).hexdigest()


def unpack(archive: bytes, target: Path) -> None:
    """Extract into ``target``, refusing members that would land outside it."""
    try:
        bundle = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise InvalidInput(
            "the upload is not a zip archive; make one with `nbplane job export DIR`",
            field="body",
        ) from None
    with bundle:
        total = 0
        for member in bundle.infolist():
            path = PurePosixPath(member.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
                raise InvalidInput(
                    f"archive member {member.filename!r} points outside the job directory",
                    field="body",
                    member=member.filename,
                )
            total += member.file_size
            if total > MAX_UNPACKED_BYTES:
                raise InvalidInput(
                    f"the archive unpacks to over {MAX_UNPACKED_BYTES} bytes", field="body"
                )
        for member in bundle.infolist():
            try:
                bundle.extract(member, target)
            except UNREADABLE as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise InvalidInput(
                    f"archive member {member.filename!r} cannot be unpacked: {reason}; make the "
                    "archive again with `nbplane job export DIR`",
                    field="body",
                    member=member.filename,
                ) from None


UNREADABLE = (
    zipfile.BadZipFile,  # a wrong CRC or size
    EOFError,  # data cut short
    zlib.error,  # corrupt compressed data
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # encrypted
    OSError,  # a name the file system refuses (too long, a file where a directory goes)
    ValueError,
)
"""What extracting a damaged or odd member raises; the user sent it, so it is a 422. An
OSError's text names our directory, so only its reason is shown."""


def inspect(archive: bytes) -> tuple[list[str], JobConfig]:
    """The job's steps and config, or InvalidInput saying why the archive is not a runnable
    job."""
    with tempfile.TemporaryDirectory(prefix="nbplane-upload-") as scratch:
        unpack(archive, Path(scratch))
        try:
            job = load_job(Path(scratch))
        except NbplaneError as exc:
            fields = {key: _inside(value, scratch) for key, value in exc.fields.items()}
            raise InvalidInput(
                f"the archive is not a job: {_inside(exc.message, scratch)}",
                **{**fields, "field": "body"},
            ) from None
        return [step.name for step in job.steps], job.config


def _inside(value: Any, scratch: str) -> Any:
    """Text about the unpacked job with the scratch directory left out: paths in an answer
    are the archive's own, never the server's."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        for root in {str(Path(scratch).resolve()), scratch}:
            value = value.replace(root + "/", "").replace(root, "the archive")
    return value
