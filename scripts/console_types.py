"""The web console's API types (labextension/console/openapi.d.ts), made by openapi-typescript
from the OpenAPI document of the current app, so the console is typed by what the server says.

``python scripts/console_types.py`` rewrites the file; ``--check`` only says whether it is
current (tests/unit/test_console_types.py runs that), exiting 1 with a hint when it is not."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"
TYPES = LABEXTENSION / "console" / "openapi.d.ts"
GENERATOR = LABEXTENSION / "node_modules" / ".bin" / "openapi-typescript"


def document() -> dict[str, object]:
    """The app's OpenAPI document without any notebook of a catalog: the same on every machine."""
    from nbplane.server.app import ServerConfig, create_app

    with tempfile.TemporaryDirectory() as empty:
        where = Path(empty)
        app = create_app(ServerConfig(notebooks_dir=where, store_url="sqlite://", cache_dir=where))
        return app.openapi()


def generate() -> str:
    if not GENERATOR.exists():
        raise SystemExit(f"{GENERATOR} is missing: run `jlpm install` in {LABEXTENSION}")
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "openapi.json"
        target = Path(scratch) / "openapi.d.ts"
        source.write_text(json.dumps(document(), indent=1, sort_keys=True))
        subprocess.run(
            [str(GENERATOR), str(source), "-o", str(target)],
            check=True,
            cwd=scratch,
            capture_output=True,
        )
        return target.read_text()


def main(arguments: list[str]) -> int:
    made = generate()
    if "--check" in arguments:
        if TYPES.exists() and TYPES.read_text() == made:
            return 0
        print(
            f"{TYPES.relative_to(ROOT)} differs from what the app's OpenAPI document makes: "
            "run `python scripts/console_types.py` and rebuild the console",
            file=sys.stderr,
        )
        return 1
    TYPES.write_text(made)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
