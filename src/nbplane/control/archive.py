"""Job archives: the zip of ``nbplane job export``, checked before it is kept and unpacked
safely where an execution runs."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from nbplane.errors import InvalidInput, NbplaneError
from nbplane.jobs.definition import load_job

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
        bundle.extractall(target)


def inspect(archive: bytes) -> list[str]:
    """The job's steps, or InvalidInput saying why the archive is not a runnable job."""
    with tempfile.TemporaryDirectory(prefix="nbplane-upload-") as scratch:
        unpack(archive, Path(scratch))
        try:
            job = load_job(Path(scratch))
        except NbplaneError as exc:
            raise InvalidInput(
                f"the archive is not a job: {exc.message}", field="body", **exc.fields
            ) from None
        return [step.name for step in job.steps]
