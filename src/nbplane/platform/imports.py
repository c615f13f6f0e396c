"""Importing a package without some of its optional parts, for a leaner server.

Some packages import optional companions at their own import whenever they are installed, and
pay for them then, although a server rarely or never uses them (jsonschema's format checkers'
parsers, httpx's command line). Hiding a companion while the package is first imported makes
the package skip it, as it would were the companion not installed; it stays importable after.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Collection


def import_hiding(package: str, companions: Collection[str]) -> bool:
    """Import ``package`` with ``companions`` unimportable during that import. Returns whether
    they were hidden: not when ``package`` or one of them was already imported (then
    ``package`` is imported as usual, if need be)."""
    if package in sys.modules:
        return False
    if any(companion in sys.modules for companion in companions):
        importlib.import_module(package)
        return False
    for companion in companions:
        sys.modules[companion] = None  # type: ignore[assignment]  # its import raises ImportError
    try:
        importlib.import_module(package)
    finally:
        for companion in companions:
            del sys.modules[companion]
    return True
