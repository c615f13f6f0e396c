"""The secret scan: the clear text of the secrets the suite set (a job secret, a connection
password, a session's environment secret) and of the users' tokens (a session's own among
them) is nowhere in NBPLANE_HOME (every file, the SQLite database and its WAL among them: they
hold only ciphertext), in the server's log, or in any answer the suite's clients received.

It runs after the other security tests (files run in name order), so it sees every answer they
got; run alone, it first reads every GET route as alice and as an admin."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest

from nbplane.platform.secrets import SecretBox
from tests.security.conftest import TEAM_A, World, expect
from tests.security.scan import files_under, findings
from tests.security.test_access_matrix import ADMIN, ROUTES, RULES, send


@pytest.mark.parametrize("prefix", [b"", b"x", b"xy"])
def test_the_scan_finds_each_encoding(prefix: bytes) -> None:
    """The scan can fail: a secret planted clear, as hex or as base64 at any alignment is found,
    and a blob without it is not."""
    secret = "job-secret-0123456789abcdef"
    planted = [
        prefix + secret.encode() + b"tail",
        prefix + secret.encode().hex().encode(),
        base64.b64encode(prefix + secret.encode() + b"tail"),
        base64.urlsafe_b64encode(prefix + b"\xfb\xff" + secret.encode()),
    ]
    for blob in planted:
        assert findings({"it": secret}, [("blob", blob)]) == ["it in blob"], blob
    assert findings({"it": secret}, [("blob", prefix + b"job-secret-0123456789abcdeX")]) == []


def test_the_secrets_are_stored_sealed(world: World) -> None:
    """The scanned database holds every secret, encrypted: the scan below is not vacuous."""
    assert (world.home / "nbplane.db").is_file()
    box = SecretBox(world.app.state.deployments.settings)
    sealed = world.store.get_secrets_blob(f"{TEAM_A}/{world.shared.job}")
    assert sealed is not None and box.open(sealed)["api_key"] == world.secrets.job
    connection = world.store.sessions.connection(world.shared.connection)
    assert world.secrets.connection in box.open(connection.secret)["url"]
    session = world.store.sessions.get(world.shared.session)
    environment = box.open(session.secrets)["environment"]
    assert environment == {"WAREHOUSE_API_KEY": world.secrets.session}
    sent = world.store.deployments.due_notifications(datetime.now(UTC) + timedelta(days=1))
    notification = next(found for found in sent if found.sealed_url is not None)
    assert box.open(notification.sealed_url.encode())["url"] == world.secrets.webhook_url


def test_no_clear_text_secret_in_home_log_or_answers(world: World) -> None:
    logging.getLogger("nbplane.server").debug("secret scan: the log is captured")
    assert "secret scan: the log is captured" in world.log.text
    for route in ROUTES:
        rule = RULES.get(route)
        if route.startswith("GET ") and rule is not None:
            for role in ("alice", ADMIN):
                send(world, role, route, rule, world.shared)
    root = world.client("root", world.secrets.admin)
    assert expect(root.get("/api/v1/me"), 200)["user"] == "root", "the first admin's token works"
    assert expect(root.get("/api/v1/tokens"), 200)[0]["name"] == "bootstrap"
    box = SecretBox(world.app.state.deployments.settings)
    session = box.open(world.store.sessions.get(world.shared.session).secrets)
    secrets = {
        **world.secrets.named(),
        **{f"{user}'s token": token for user, token in world.tokens.items()},
        "the token alice's session speaks for her with": session["nbplane_token"],
    }
    places = files_under(world.home, "NBPLANE_HOME")
    assert places, "NBPLANE_HOME is empty: nothing was scanned"
    places.append(("the server log", world.log.text.encode()))
    for exchange in world.exchanges:
        headers = "\n".join(f"{name}: {value}" for name, value in exchange.headers).encode()
        where = f"{exchange.user}'s {exchange.method} {exchange.path} ({exchange.status})"
        places.append((f"the answer to {where}", headers + b"\n\n" + exchange.body))
    assert len(world.exchanges) > len(ROUTES), "too few answers recorded to mean anything"
    leaked = findings(secrets, places)
    assert not leaked, "clear-text secrets found:\n" + "\n".join(leaked)
