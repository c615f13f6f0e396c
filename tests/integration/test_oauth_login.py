"""``nbplane login --oauth`` in a subprocess against a real ``nbplane serve`` and a real OAuth2
provider (authlib's server components) on loopback, the browser played by a script that
follows the provider's redirect to the CLI's callback; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, database_url
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_cli_control import Cli, client, one_line_error
from tests.oauth_provider import Provider, User, running_provider

BROWSER = Path(__file__).parents[1] / "oauth_browser.py"


def browsing_cli(root: Path, home: Path) -> Cli:
    """A user's machine whose browser is tests/oauth_browser.py: it follows the provider's
    redirect at once."""
    cli = client(home)
    script = root / "browser"
    if not script.exists():
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{BROWSER}" "$1"\n')
        script.chmod(0o755)
    cli.variables["BROWSER"] = str(script)
    return cli


@dataclass
class OAuth:
    provider: Provider
    server: Server
    root: Path
    store_url: str

    def cli(self, name: str) -> Cli:
        return browsing_cli(self.root, self.root / f"home-{name}")

    def login(self, cli: Cli, *args: str, check: int | None = 0, spoil: str = "") -> Any:
        """``nbplane login --oauth``; a browser that fails leaves the CLI waiting, for a
        minute here rather than the default five."""
        return cli.run(
            "login",
            "--oauth",
            "--url",
            self.server.url,
            "--timeout",
            "60",
            *args,
            check=check,
            NBPLANE_TEST_BROWSER=spoil,
        )

    def users(self) -> dict[str, Any]:
        listed = nbplane("user", "list", "--output", "json", environment=self.server.environment)
        return {user["name"]: user for user in json.loads(listed.stdout)}


@pytest.fixture(scope="module", params=BACKENDS)
def oauth(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OAuth]:
    root = tmp_path_factory.mktemp("oauth")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    with database_url(request.param, root) as url, running_provider() as provider:
        store = url if url.startswith("postgresql") else f"sqlite:///{root / 'nbplane.db'}"
        with running_server(
            notebooks, root / "server-home", store, environment=provider.settings
        ) as server:
            yield OAuth(provider, server, root, store)


def test_login_in_the_browser_makes_the_user_with_their_groups_as_teams(oauth: OAuth) -> None:
    oauth.provider.user = User("carol", ["analytics", "ops", "Not A Team", "/admins"])
    cli = oauth.cli("carol")
    logged_in = oauth.login(cli)
    assert f"{oauth.provider.url}/authorize?" in logged_in.stdout, "printed for headless use"
    assert "code_challenge_method=S256" in logged_in.stdout
    assert "as carol; teams: analytics, ops" in logged_in.stdout, logged_in.stdout
    assert not logged_in.stderr

    saved = cli.home / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    credentials = json.loads(saved.read_text())
    assert credentials["url"] == oauth.server.url and credentials["token"].startswith("nbp_")
    assert credentials["token"] not in oauth.provider.tokens, "nbplane's own token, not theirs"
    assert isinstance(cli.json("job", "list", "--team", "analytics"), list)
    assert isinstance(cli.json("job", "list", "--team", "ops"), list)

    carol = oauth.users()["carol"]
    assert carol["teams"] == ["analytics", "ops"] and not carol["admin"]
    tokens = nbplane("token", "list", environment=oauth.server.environment).stdout
    assert "login-" in tokens and "-carol-" in tokens, "revocable like any token"


def test_each_login_sets_the_teams_from_the_groups_claim(oauth: OAuth) -> None:
    oauth.provider.user = User("dave", ["analytics", "ops"])
    cli = oauth.cli("dave")
    oauth.login(cli)
    oauth.provider.user = User("dave", ["ops"])
    assert "teams: ops" in oauth.login(cli).stdout
    one_line_error(cli.run("job", "list", "--team", "analytics", check=None))
    assert oauth.users()["dave"]["teams"] == ["ops"]

    oauth.provider.user = User("dave", None)
    assert "teams: ops" in oauth.login(cli).stdout, "no groups claim: memberships kept"
    nbplane("user", "join", "dave", "finance", environment=oauth.server.environment)
    assert "teams: finance, ops" in oauth.login(cli).stdout


def test_an_existing_user_logs_in_as_themselves(oauth: OAuth) -> None:
    nbplane("user", "create", "erin", "--admin", environment=oauth.server.environment)
    oauth.provider.user = User("erin")
    assert "as erin (admin)" in oauth.login(oauth.cli("erin")).stdout


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ("state", ["another login's state"]),
        ("code", ["refused the login", "invalid_grant"]),
        ("challenge", ["refused the login", "invalid_grant", "Code challenge failed"]),
    ],
)
def test_a_spoiled_login_fails_in_one_line(oauth: OAuth, spoil: str, words: list[str]) -> None:
    oauth.provider.user = User("frank", ["ops"])
    cli = oauth.cli(f"spoiled-{spoil}")
    one_line_error(oauth.login(cli, check=None, spoil=spoil), *words)
    assert not (cli.home / "credentials.json").exists()
    assert "frank" not in oauth.users()


def test_no_login_in_the_browser_times_out(oauth: OAuth) -> None:
    cli = oauth.cli("away")
    one_line_error(
        oauth.login(cli, "--timeout", "1", check=None, spoil="away"), "within 1 s", "--timeout"
    )
    assert not (cli.home / "credentials.json").exists()


def test_the_builtin_admin_cannot_log_in_through_the_provider(oauth: OAuth) -> None:
    oauth.provider.user = User("admin", ["ops"])
    one_line_error(oauth.login(oauth.cli("admin"), check=None), "built-in admin")


def test_token_and_oauth_together_are_refused(oauth: OAuth) -> None:
    one_line_error(
        oauth.login(oauth.cli("both"), "--token", "nbp_x", check=None), "--token or --sso"
    )


def test_api_needs_no_token_and_refuses_what_the_provider_refuses(oauth: OAuth) -> None:
    described = httpx.get(f"{oauth.server.url}/api/v1/auth/oauth")
    assert described.status_code == 200
    assert described.json() == {
        "authorize_url": f"{oauth.provider.url}/authorize",
        "token_url": f"{oauth.provider.url}/token",
        "client_id": "nbplane-cli",
        "scopes": "openid profile",
    }
    refused = httpx.post(
        f"{oauth.server.url}/api/v1/auth/oauth/token",
        json={"access_token": "not-from-the-provider"},
    )
    assert refused.status_code == 401
    assert "refused the access token" in refused.json()["message"]
    empty = httpx.post(f"{oauth.server.url}/api/v1/auth/oauth/token", json={"access_token": ""})
    assert empty.status_code == 422


def test_a_server_without_oauth_says_so(oauth: OAuth) -> None:
    with running_server(
        oauth.root / "notebooks", oauth.root / "plain-home", oauth.store_url
    ) as plain:
        answer = httpx.get(f"{plain.url}/api/v1/auth/oauth")
        assert answer.status_code == 404
        assert "NBPLANE_OAUTH_AUTHORIZE_URL" in answer.json()["message"]
        cli = oauth.cli("plain")
        refused = cli.run("login", "--oauth", "--url", plain.url, check=None)
        one_line_error(refused, "OAuth login is not configured", "nbplane token create")
