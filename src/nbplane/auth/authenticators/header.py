"""``header``: a gateway in front of nbplane (oauth2-proxy, renku-gateway) has logged the person
in and says who they are in a request header (and their groups in another). The header is
believed only from the gateway's addresses (NBPLANE_HEADER_PROXIES); a request from anywhere
else carrying it is refused, never trusted, so nobody names themselves by adding it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from nbplane.auth.authenticators.base import Authenticator, Identity, Presented
from nbplane.errors import ConfigError, Unauthorized

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class HeaderAuthenticator(Authenticator):
    name: ClassVar[str] = "header"
    identifies_requests: ClassVar[bool] = True
    proxies: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.proxies = proxy_networks(self.settings.header_proxies)

    @property
    def user_header(self) -> str:
        return self.settings.header_user.lower()

    @property
    def groups_header(self) -> str:
        return self.settings.header_groups.lower()

    def screen(self, presented: Presented) -> None:
        carried = [
            name
            for name in (self.settings.header_user, self.settings.header_groups)
            if name.lower() in presented.headers
        ]
        if carried and not self._from_proxy(presented.client):
            raise Unauthorized(
                f"the {carried[0]} header is believed only from the gateway's addresses "
                f"(NBPLANE_HEADER_PROXIES), not from {presented.client or 'an unknown address'}",
                field=carried[0].lower(),
            )

    def identify(self, presented: Presented) -> Identity | None:
        self.screen(presented)
        user = presented.headers.get(self.user_header, "").strip()
        if not user:
            return None
        groups = presented.headers.get(self.groups_header)
        named = None if groups is None else tuple(g.strip() for g in groups.split(",") if g.strip())
        return Identity(user=user, groups=named)

    def _from_proxy(self, client: str | None) -> bool:
        try:
            address = ipaddress.ip_address(client or "")
        except ValueError:
            return False
        return any(address in network for network in self.proxies)


def proxy_networks(value: str) -> tuple[Network, ...]:
    """The comma-separated addresses and CIDRs of NBPLANE_HEADER_PROXIES."""
    networks = []
    for part in (part.strip() for part in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"NBPLANE_HEADER_PROXIES: {part!r} is not an address or a CIDR",
                field="header_proxies",
            ) from None
    if not networks:
        raise ConfigError(
            "the header authenticator needs NBPLANE_HEADER_PROXIES: the gateway's addresses or "
            "CIDRs, comma-separated (e.g. 10.0.0.0/8), the only ones whose header is believed",
            field="header_proxies",
        )
    return tuple(networks)
