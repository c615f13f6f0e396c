"""Session launchers, chosen by ``NBPLANE_SESSION_LAUNCHER``."""

from __future__ import annotations

from nbplane.plugins import ExtensionPoint
from nbplane.sessions.launchers.base import SessionLauncher
from nbplane.settings import Settings

LAUNCHERS = ExtensionPoint[SessionLauncher](
    "nbplane.session_launchers", SessionLauncher, "session launcher", "NBPLANE_SESSION_LAUNCHER"
)


def launcher_named(name: str, settings: Settings) -> SessionLauncher:
    """The launcher called ``name``, imported only when chosen (kubernetes is heavy)."""
    return LAUNCHERS.load(name)(settings)
