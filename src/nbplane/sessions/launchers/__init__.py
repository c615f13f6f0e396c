"""Session launchers, chosen by ``NBPLANE_SESSION_LAUNCHER``."""

from __future__ import annotations

from nbplane.errors import ConfigError
from nbplane.sessions.launchers.base import SessionLauncher
from nbplane.settings import Settings

LAUNCHERS = {
    "local": "nbplane.sessions.launchers.local:LocalLauncher",
    "kubernetes": "nbplane.sessions.launchers.kubernetes:KubernetesLauncher",
}


def launcher_named(name: str, settings: Settings) -> SessionLauncher:
    """The launcher called ``name``, imported only when chosen (kubernetes is heavy)."""
    import importlib

    if name not in LAUNCHERS:
        raise ConfigError(
            f"unknown session launcher {name!r}; choose one of {', '.join(LAUNCHERS)}",
            field="NBPLANE_SESSION_LAUNCHER",
        )
    module, _, attribute = LAUNCHERS[name].partition(":")
    launcher: type[SessionLauncher] = getattr(importlib.import_module(module), attribute)
    return launcher(settings)
