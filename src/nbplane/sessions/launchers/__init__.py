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
    return launcher_class(name)(settings)


def launcher_class(name: str) -> type[SessionLauncher]:
    """The class of the launcher called ``name``; a ``package.module:Class`` name loads a
    launcher of one's own."""
    import importlib

    if name not in LAUNCHERS and ":" not in name:
        raise ConfigError(
            f"unknown session launcher {name!r}; choose one of {', '.join(LAUNCHERS)}",
            field="NBPLANE_SESSION_LAUNCHER",
        )
    module, _, attribute = LAUNCHERS.get(name, name).partition(":")
    try:
        launcher: type[SessionLauncher] = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load session launcher {name!r}: {exc}", field="NBPLANE_SESSION_LAUNCHER"
        ) from None
    return launcher
