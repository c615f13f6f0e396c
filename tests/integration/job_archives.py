"""Job archives as `nbplane job export` makes them, and damaged ones, for upload tests."""

from __future__ import annotations

import io
import zipfile


def job_archive(files: dict[str, str]) -> bytes:
    """A zip of these files; stored (not compressed), so damage shows as a wrong CRC."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return buffer.getvalue()


def broken_crc(archive: bytes) -> bytes:
    """The archive with a byte of its first member's data flipped: its CRC no longer holds."""
    data = bytearray(archive)
    header = data.index(b"PK\x03\x04")
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    data[header + 30 + name_length + extra_length + 1] ^= 0x55
    return bytes(data)


RUNNABLE = job_archive({"10_load.py": "def run(job_input):\n    pass\n"})
BAD_RETENTION = job_archive(
    {"10_load.py": "def run(job_input):\n    pass\n", "config.ini": "[retention]\nkeep_runs = -1\n"}
)
"""A job whose config.ini keeps a negative number of runs: refused (422) on upload."""
