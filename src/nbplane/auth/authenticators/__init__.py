"""Authenticators, chosen by ``NBPLANE_AUTHENTICATOR``: ``token`` (nbplane's own tokens only),
``oidc``, ``header`` and ``app``, or a plugin's (entry-point group ``nbplane.authenticators``)."""

from __future__ import annotations

from nbplane.auth.authenticators.base import Authenticator
from nbplane.plugins import ExtensionPoint
from nbplane.settings import Settings

AUTHENTICATORS = ExtensionPoint[Authenticator](
    "nbplane.authenticators", Authenticator, "authenticator", "NBPLANE_AUTHENTICATOR"
)


def authenticator_named(name: str, settings: Settings) -> Authenticator:
    """The authenticator called ``name``, built from ``settings`` (its own checked now, so a
    server with a half-configured one refuses to start)."""
    return AUTHENTICATORS.load(name)(settings)
