"""The web console is typed from the app's OpenAPI document: its committed types must be what
openapi-typescript makes of the current document, or a changed route would go unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "console_types.py"
GENERATOR = ROOT / "labextension" / "node_modules" / ".bin" / "openapi-typescript"


def test_committed_console_types_match_the_openapi_document() -> None:
    if not GENERATOR.exists():
        if os.environ.get("NBPLANE_TEST_REQUIRE_BROWSER") == "1":  # make test: it is installed
            pytest.fail(f"{GENERATOR} is missing: run `jlpm install` in labextension/")
        pytest.skip(f"{GENERATOR} is missing (jlpm install in labextension/)")
    checked = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
