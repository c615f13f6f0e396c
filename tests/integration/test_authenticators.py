"""The identity suite, the same for each authenticator: ``nbplane login`` through it from the
CLI against a real ``nbplane serve`` on loopback, teams from groups, sign-out, a revoked login
refused. The identity sources are real too: a gateway in front of the server adding its
headers from an address of its own (header), an application answering who its sign-ins are
(app), and nbplane's own tokens (token)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from nbplane.auth.logins import teams_of
from tests.identity_sources import (
    GATEWAY_ADDRESS,
    App,
    Gateway,
    Person,
    running_app,
    running_gateway,
)
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_cli_control import Cli, one_line_error
from tests.integration.test_oauth_login import browsing_cli
from tests.oauth_provider import CLIENT_ID, Provider, User, running_provider

AUTHENTICATORS = ["token", "header", "app", "oidc"]
CSRF = {"X-Nbplane-Csrf": "1"}


@dataclass
class Source:
    """A server whose authenticator is ``kind``, and the identity source it believes."""

    kind: str
    server: Server
    root: Path
    gateway: Gateway | None = None
    app: App | None = None
    provider: Provider | None = None
    made: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        """Where people's CLIs reach nbplane: through the gateway, if there is one."""
        return self.gateway.url if self.gateway else self.server.url

    def cli(self, name: str) -> Cli:
        """A person's machine; its browser follows the provider's redirect at once."""
        return browsing_cli(self.root, self.root / f"home-{name}-{secrets.token_hex(3)}")

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return nbplane(*args, environment=self.server.environment)

    def login(self, cli: Cli, person: Person, check: int | None = 0) -> Any:
        """``nbplane login`` as the source vouches for ``person`` now."""
        if self.kind == "token":  # an admin makes the user and a token; they log in with it
            if person.user not in self.made:
                self.admin("user", "create", person.user)
                self.made.add(person.user)
            for team in teams_of(person.groups):  # what a source's groups would make
                self.admin("user", "join", person.user, team)
            name = f"t-{secrets.token_hex(4)}"
            token = self.admin("token", "create", name, "--user", person.user).stdout.strip()
            return cli.run("login", "--url", self.url, "--token", token, check=check)
        if self.kind == "header":
            assert self.gateway is not None
            self.gateway.person = person
            return cli.run("login", "--sso", "--url", self.url, check=check)
        if self.kind == "oidc":
            assert self.provider is not None
            self.provider.user = User(person.user, person.groups)
            return cli.run("login", "--sso", "--url", self.url, "--timeout", "60", check=check)
        assert self.app is not None
        credential = secrets.token_urlsafe(16)
        self.app.sign_ins[credential] = person
        return cli.run(
            "login", "--sso", "--url", self.url, "--source-token", credential, check=check
        )

    def saved_token(self, cli: Cli) -> str:
        token: str = json.loads((cli.home / "credentials.json").read_text())["token"]
        return token

    def me(self, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture(scope="module", params=AUTHENTICATORS)
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"authenticator-{kind}")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    store = f"sqlite:///{root / 'nbplane.db'}"
    with running_app() as app, running_provider() as provider:
        environment = {"NBPLANE_AUTHENTICATOR": kind}
        if kind == "oidc":  # renewed with the refresh token at each lookup of a login's token
            environment.update(provider.oidc_settings, NBPLANE_OIDC_REFRESH_SECONDS="0.001")
        if kind == "header":
            environment["NBPLANE_HEADER_PROXIES"] = f"{GATEWAY_ADDRESS}/32"
        if kind == "app":
            environment["NBPLANE_APP_URL"] = app.whoami
        with running_server(notebooks, root / "home", store, environment=environment) as server:
            if kind == "header":
                with running_gateway(server.url) as gateway:
                    yield Source(kind, server, root, gateway=gateway)
            else:
                yield Source(
                    kind,
                    server,
                    root,
                    app=app if kind == "app" else None,
                    provider=provider if kind == "oidc" else None,
                )


def test_sign_in_from_the_cli_makes_the_user_and_a_token_of_nbplane(source: Source) -> None:
    cli = source.cli("ada")
    logged_in = source.login(cli, Person("ada", ["analytics", "Not A Team"]))
    assert "as ada; teams: analytics" in logged_in.stdout, logged_in.stdout
    assert isinstance(cli.json("job", "list", "--team", "analytics"), list)
    token = source.saved_token(cli)
    assert token.startswith("nbp_"), "nbplane's own token, whatever the source"
    me = source.me(token).json()
    assert (me["user"], me["admin"], me["teams"]) == ("ada", False, ["analytics"])
    if source.kind != "token":
        assert me["token"].startswith(f"login-{source.kind}-ada-"), me


def test_each_login_sets_the_teams_from_the_groups(source: Source) -> None:
    if source.kind == "token":
        pytest.skip("nbplane's own tokens carry no groups: an admin sets the teams")
    cli = source.cli("bea")
    source.login(cli, Person("bea", ["analytics", "ops"]))
    assert "teams: ops" in source.login(cli, Person("bea", ["ops"])).stdout
    one_line_error(cli.run("job", "list", "--team", "analytics", check=None))
    assert "teams: ops" in source.login(cli, Person("bea")).stdout, "no groups: teams kept"


def test_sign_out_ends_the_login(source: Source) -> None:
    cli = source.cli("cid")
    source.login(cli, Person("cid", ["ops"]))
    token = source.saved_token(cli)
    assert "logged out" in cli.run("logout").stdout
    assert not (cli.home / "credentials.json").exists()
    refused = source.me(token)
    if source.kind == "token":
        assert refused.status_code == 200, "a token from `nbplane token create` stays"
    else:
        assert refused.status_code == 401 and "revoked" in refused.json()["message"]


def test_a_revoked_login_is_refused(source: Source) -> None:
    cli = source.cli("dot")
    source.login(cli, Person("dot", ["ops"]))
    name = source.me(source.saved_token(cli)).json()["token"]
    nbplane(
        "token",
        "revoke",
        name,
        "--url",
        source.server.url,
        "--token",
        source.server.token,
        environment=source.server.environment,
    )
    one_line_error(cli.run("job", "list", "--team", "ops", check=None), "revoked")


def test_the_builtin_admin_cannot_sign_in_through_a_source(source: Source) -> None:
    if source.kind == "token":
        pytest.skip("an admin's token is the admin's by design")
    refused = source.login(source.cli("admin"), Person("admin", ["ops"]), check=None)
    one_line_error(refused, "built-in admin")


def only(kind: str) -> pytest.MarkDecorator:
    """A test of one authenticator's own behaviour: the suite's server of that kind only."""
    return pytest.mark.parametrize("source", [kind], indirect=True)


@only("header")
def test_the_gateway_header_from_elsewhere_is_refused_never_trusted(source: Source) -> None:
    forged = {"X-Forwarded-User": "ada", "X-Forwarded-Groups": "ops"}
    for headers in (forged, {**forged, "Authorization": f"Bearer {source.server.token}"}):
        refused = httpx.get(f"{source.server.url}/api/v1/me", headers=headers)
        assert refused.status_code == 401, refused.text
        assert "X-Forwarded-User" in refused.json()["message"]
        assert "NBPLANE_HEADER_PROXIES" in refused.json()["message"]
    login = httpx.post(f"{source.server.url}/api/v1/auth/login", json={}, headers=forged)
    assert login.status_code == 401 and "X-Forwarded-User" in login.json()["message"]


@only("header")
def test_the_gateway_identifies_each_request_and_a_browser_signs_in(source: Source) -> None:
    assert source.gateway is not None
    source.gateway.person = None
    nobody = httpx.get(f"{source.url}/api/v1/me")
    assert nobody.status_code == 401
    source.gateway.person = Person("eve", ["ops"])
    me = httpx.get(f"{source.url}/api/v1/me").json()
    assert (me["user"], me["teams"], me["token"]) == ("eve", ["ops"], None)
    change = httpx.post(f"{source.url}/api/v1/tokens", json={"name": "eve-script"})
    assert change.status_code == 403, (
        "a gateway's sign-in is ambient: a change needs the CSRF header"
    )
    assert_browser_signs_in_and_out(source.url, {}, "eve")


def assert_browser_signs_in_and_out(url: str, cookies: dict[str, str], user: str) -> None:
    with httpx.Client(base_url=url, cookies=cookies) as browser:
        described = browser.get("/api/v1/auth").json()
        assert described["request_login"] and not described["browser_login"]
        signed_in = browser.get("/nbplane/login")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        token = browser.cookies["nbplane_token"]
        assert browser.get("/api/v1/me").json()["token"].startswith("web-sign-in-")
        out = browser.post("/api/v1/auth/sign-out", headers={"X-Nbplane-Csrf": "1"})
        assert out.status_code == 204
    refused = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["message"], user


@only("app")
def test_the_app_grants_connections_and_signs_a_browser_in(source: Source) -> None:
    assert source.app is not None
    connection = {"name": "lake", "kind": "database", "values": {"url": "sqlite:///lake.db"}}
    source.app.sign_ins["browser-session"] = Person("fay", ["ops"], [connection])
    assert_browser_signs_in_and_out(source.url, {"sessionid": "browser-session"}, "fay")
    admin = {"Authorization": f"Bearer {source.server.token}"}
    stored = httpx.get(f"{source.url}/api/v1/connections/lake", headers=admin).json()
    assert stored["keys"] == ["url"] and {"kind": "user", "name": "fay"} in stored["grants"]
    assert stored["created_by"] == "app-authenticator"
    cookies = {"sessionid": "browser-session"}
    me = httpx.get(f"{source.url}/api/v1/me", cookies=cookies).json()  # each request, no token
    assert (me["user"], me["teams"], me["token"]) == ("fay", ["ops"], None)
    refused = httpx.post(f"{source.url}/api/v1/auth/login", json={}, cookies=cookies)
    assert refused.status_code == 403, "an ambient sign-in's login needs the CSRF header"
    moved = {**connection, "values": {"url": "sqlite:///moved.db"}, "description": "moved"}
    source.app.sign_ins["next-session"] = Person("fay", ["ops"], [moved])
    login = app_login(source, "next-session")
    assert login.status_code == 201, login.text
    stored = httpx.get(f"{source.url}/api/v1/connections/lake", headers=admin).json()
    assert stored["description"] == "moved" and {"kind": "user", "name": "fay"} in stored["grants"]
    source.app.sign_ins["last-session"] = Person("fay", ["ops"], [])
    login = app_login(source, "last-session")
    assert login.status_code == 201, login.text
    stored = httpx.get(f"{source.url}/api/v1/connections/lake", headers=admin).json()
    assert {"kind": "user", "name": "fay"} not in stored["grants"], "no longer given: revoked"


def app_login(source: Source, cookie: str) -> httpx.Response:
    """A login with the application's session cookie, as the console's script sends it."""
    return httpx.post(
        f"{source.url}/api/v1/auth/login", json={}, cookies={"sessionid": cookie}, headers=CSRF
    )


@only("app")
def test_the_app_failing_is_a_clear_502_and_its_refusal_a_401(source: Source) -> None:
    assert source.app is not None
    url = f"{source.url}/api/v1/auth/login"
    refused = httpx.post(url, json={}, headers={"Authorization": "Bearer unknown-to-the-app"})
    assert refused.status_code == 401, refused.text
    assert "does not know this sign-in" in refused.json()["message"]
    source.app.sign_ins["down-session"] = Person("gus")
    source.app.failing = 500
    try:
        failed = httpx.post(url, json={}, cookies={"sessionid": "down-session"}, headers=CSRF)
    finally:
        source.app.failing = None
    assert failed.status_code == 502, failed.text
    assert "answered 500" in failed.json()["message"] and source.app.whoami in failed.text


@only("oidc")
def test_the_provider_refusing_the_refresh_ends_the_login(source: Source) -> None:
    assert source.provider is not None
    cli = source.cli("hal")
    source.login(cli, Person("hal", ["ops"]))
    renewed = source.provider.refreshed
    assert source.me(source.saved_token(cli)).status_code == 200
    assert source.provider.refreshed == renewed + 1, "renewed at the provider"
    other = source.cli("hal-2")
    source.login(other, Person("hal", ["ops"]))
    source.provider.refuse_refresh()
    refused = source.me(source.saved_token(other))
    assert refused.status_code == 401, refused.text
    assert "ended this login" in refused.json()["message"]
    one_line_error(other.run("job", "list", "--team", "ops", check=None), "revoked")


def id_token(provider: Provider, key: RSAKey | None = None, **changed: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": provider.url,
        "aud": CLIENT_ID,
        "sub": "id-ivy",
        "preferred_username": "ivy",
        "iat": now,
        "exp": now + 300,
        "nonce": "the-nonce",
        **changed,
    }
    signer = key or provider.key
    return jwt.encode({"alg": "RS256", "kid": signer.kid}, claims, signer)


@only("oidc")
@pytest.mark.parametrize(
    ("changed", "words"),
    [
        ({"key": RSAKey.generate_key(2048, parameters={"kid": "nbplane-tests"})}, "signature"),
        ({"aud": "another-client"}, "aud"),
        ({"iss": "https://elsewhere.example"}, "iss"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "another-login"}, "nonce"),
    ],
)
def test_an_id_token_that_does_not_hold_is_refused(
    source: Source, changed: dict[str, Any], words: str
) -> None:
    assert source.provider is not None
    key = changed.pop("key", None)
    body = {
        "access_token": "at",
        "id_token": id_token(source.provider, key, **changed),
        "nonce": "the-nonce",
    }
    refused = httpx.post(f"{source.url}/api/v1/auth/oauth/token", json=body)
    assert refused.status_code == 401, refused.text
    assert "ID token is not valid" in refused.json()["message"] and words in refused.text


@only("oidc")
def test_a_browser_signs_in_at_the_provider_and_out_of_it(source: Source) -> None:
    assert source.provider is not None
    source.provider.user = User("jo", ["ops"])
    with httpx.Client(base_url=source.url) as browser:
        described = browser.get("/api/v1/auth").json()
        assert described["browser_login"]
        assert described["provider"] == source.provider.url.removeprefix("http://")
        hop = browser.get("/nbplane/login")
        for _ in range(3):  # nbplane, the provider (approves at once), nbplane's callback
            hop = browser.get(hop.headers["location"])
        assert hop.status_code == 303 and hop.headers["location"] == "/", hop.headers
        me = browser.get("/api/v1/me").json()
        assert (me["user"], me["teams"]) == ("jo", ["ops"])
        token = browser.cookies["nbplane_token"]
        out = browser.get("/nbplane/logout")
        assert out.status_code == 303
        assert out.headers["location"].startswith(f"{source.provider.url}/logout?")
        back = browser.get(out.headers["location"])
        assert back.headers["location"] == f"{source.url}/", "the provider sends it back"
    assert source.provider.ended[-1]["client_id"] == CLIENT_ID
    assert source.provider.ended[-1]["post_logout_redirect_uri"] == f"{source.url}/"
    assert source.me(token).status_code == 401
