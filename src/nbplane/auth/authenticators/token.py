"""``token``: nbplane's own tokens and nothing else (the default). Every other authenticator
accepts them too; this one adds no way in."""

from __future__ import annotations

from typing import ClassVar

from nbplane.auth.authenticators.base import Authenticator


class TokenAuthenticator(Authenticator):
    name: ClassVar[str] = "token"
