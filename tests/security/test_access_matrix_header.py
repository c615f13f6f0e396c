"""The access matrix again, with the header authenticator: every HTTP route as every role, each
role's requests coming from the gateway's address and naming their user (and team) in its
headers instead of carrying a token, the anonymous caller's naming no one, and the forged
caller's naming alice from an address that is not the gateway's (refused: 401, as a forged
token is). The same rules hold whoever says who is calling. WebSocket rows stay with the
token matrix: a browser's WebSocket through a gateway is the cookie's case (its origin
checked), which that matrix covers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from nbplane.auth.authenticators.header import HeaderAuthenticator
from nbplane.auth.logins import Logins
from nbplane.auth.models import CSRF_HEADER
from tests.security.conftest import ANONYMOUS, FORGED, USERS, InProcess, RecordingClient, World
from tests.security.test_access_matrix import ROLES, ROUTES, RULES, check, send

GATEWAY = "127.0.0.1"
"""The in-process transport's client address: the gateway's here."""
ELSEWHERE = ("10.9.9.9", 40000)


@pytest.fixture(scope="module")
def gateway_world(world: World) -> Iterator[World]:
    """The suite's app and objects, its authenticator the header one for this module."""
    original: Logins = world.app.state.logins
    settings = original.authenticator.settings.model_copy(
        update={"authenticator": "header", "header_proxies": f"{GATEWAY}/32"}
    )
    world.app.state.logins = Logins(
        original.auth, HeaderAuthenticator(settings), original.connections
    )
    clients = {ANONYMOUS: world.client(ANONYMOUS, "")}
    clients[ANONYMOUS].headers.pop("authorization", None)
    for user, (team, _) in USERS.items():
        clients[user] = named(world, user, user, team)
    clients[FORGED] = named(world, FORGED, "alice", USERS["alice"][0])
    forged_transport = clients[FORGED]._transport
    assert isinstance(forged_transport, InProcess)
    forged_transport.asgi = httpx.ASGITransport(
        world.app, raise_app_exceptions=False, client=ELSEWHERE
    )
    try:
        yield replace(world, clients=clients)
    finally:
        world.app.state.logins = original


def named(world: World, role: str, user: str, team: str) -> RecordingClient:
    """A client whose requests the gateway marked as ``user`` of ``team``; the page's CSRF
    header too, as a gateway's sign-in is a browser's (ambient)."""
    client = world.client(role, "")
    client.headers.pop("authorization", None)
    client.headers.update({"X-Forwarded-User": user, "X-Forwarded-Groups": team, CSRF_HEADER: "1"})
    return client


HTTP_ROUTES = [route for route in ROUTES if not route.startswith("WEBSOCKET ")]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", HTTP_ROUTES)
def test_access_through_the_gateway(gateway_world: World, route: str, role: str) -> None:
    rule = RULES[route]
    with gateway_world.objects_for(rule.fresh) as objects:
        answer = send(gateway_world, role, route, rule, objects)
        check(gateway_world, rule, role, route, objects, answer)


def test_the_forged_caller_is_refused_naming_the_header(gateway_world: World) -> None:
    refused = gateway_world.clients[FORGED].get("/api/v1/me")
    assert refused.status_code == 401
    assert "X-Forwarded-User" in refused.json()["message"]
    gateway_world.clients["alice"].cookies.clear()  # a matrix row may have signed her in
    alice = gateway_world.clients["alice"].get("/api/v1/me").json()
    assert (alice["user"], alice["token"]) == ("alice", None), "named by the gateway, no token"
