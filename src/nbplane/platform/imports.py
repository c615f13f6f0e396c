"""Importing a package without one of its optional parts, for a leaner server.

Some packages import an optional companion at their own import whenever it is installed, and
pay for it then, although a server never uses it (jsonschema's ``iri`` format parser, httpx's
command line). Hiding the companion while the package is first imported makes the package skip
it, as it would were the companion not installed; it stays importable afterwards.
"""

from __future__ import annotations

import importlib
import sys


def import_hiding(package: str, companion: str) -> bool:
    """Import ``package`` with ``companion`` unimportable during that import. Returns whether
    it was hidden: not when ``package`` or ``companion`` was already imported (then ``package``
    is imported as usual, if need be)."""
    if package in sys.modules:
        return False
    if companion in sys.modules:
        importlib.import_module(package)
        return False
    sys.modules[companion] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        importlib.import_module(package)
    finally:
        del sys.modules[companion]
    return True
