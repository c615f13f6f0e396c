"""Authenticators on their own: which one a name loads, whom the header authenticator believes,
and a login through the shipped fake (made on first login, teams from groups each time)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from nbplane._time import now
from nbplane.auth.authenticators import authenticator_named
from nbplane.auth.authenticators.base import Identity, Presented
from nbplane.auth.authenticators.header import HeaderAuthenticator
from nbplane.auth.authenticators.oidc import OidcAuthenticator
from nbplane.auth.logins import Logins
from nbplane.auth.service import AuthService
from nbplane.errors import ConfigError, Unauthorized
from nbplane.server.auth import TokenCheck
from nbplane.settings import Settings
from nbplane.store import open_store
from nbplane.testing import FAKE_LOGIN_HEADER, FakeAuthenticator


def presented(client: str, **headers: str) -> Presented:
    return Presented(
        headers={k.replace("_", "-"): v for k, v in headers.items()}, cookies={}, client=client
    )


def test_an_authenticator_is_chosen_by_name() -> None:
    settings = Settings(header_proxies="10.0.0.0/8")
    assert authenticator_named("token", settings).name == "token"
    assert isinstance(authenticator_named("header", settings), HeaderAuthenticator)
    assert authenticator_named("nbplane.testing:FakeAuthenticator", settings).name == "fake"
    with pytest.raises(ConfigError, match="unknown authenticator 'ldap'; choose one of"):
        authenticator_named("ldap", settings)


def test_the_header_authenticator_needs_the_gateways_addresses() -> None:
    with pytest.raises(ConfigError, match="needs NBPLANE_HEADER_PROXIES"):
        HeaderAuthenticator(Settings())
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.300' is not an address or a CIDR"):
        HeaderAuthenticator(Settings(header_proxies="10.0.0.300"))


def test_the_header_is_believed_from_the_gateway_only() -> None:
    header = HeaderAuthenticator(
        Settings(header_proxies="10.1.0.0/16, fd00::1", header_user="Remote-User")
    )
    found = header.identify(presented("10.1.2.3", remote_user="ada", x_forwarded_groups="a, b,"))
    assert found == Identity(user="ada", groups=("a", "b"))
    assert header.identify(presented("fd00::1", remote_user="ada")) == Identity(user="ada")
    assert header.identify(presented("10.1.2.3")) is None
    for client in ("10.2.0.1", "not an address", ""):
        with pytest.raises(Unauthorized, match="Remote-User header is believed only") as refused:
            header.screen(presented(client, remote_user="ada"))
        assert refused.value.fields["field"] == "remote-user"
    with pytest.raises(Unauthorized, match="X-Forwarded-Groups"):
        header.screen(presented("127.0.0.1", x_forwarded_groups="admins"))


def test_a_login_makes_the_user_sets_teams_and_gives_a_token(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")
    try:
        fake = FakeAuthenticator(Settings())
        logins = Logins(AuthService(store), fake)
        fake.identities["k"] = Identity(user="ada", groups=("ops", "Not A Team"))
        key = presented("127.0.0.1", **{FAKE_LOGIN_HEADER.lower().replace("-", "_"): "k"})
        identity = fake.identify(key)
        assert identity is not None
        made = logins.log_in(identity)
        assert (made.user, made.teams, made.authenticator) == ("ada", ["ops"], "fake")
        caller = AuthService(store).authenticate(made.token)
        assert caller is not None and caller.token is not None
        assert logins.is_login_token(caller.token)
        assert logins.establish(Identity(user="ada", groups=("sales",))).teams == ["sales"]
        assert logins.establish(Identity(user="ada")).teams == ["sales"], "no groups: kept"
        with pytest.raises(Unauthorized, match="knows no login"):
            fake.identify(presented("127.0.0.1", **{"x_nbplane_fake_login": "stale"}))
    finally:
        store.close()


def test_oidc_and_app_say_which_settings_they_need() -> None:
    with pytest.raises(ConfigError, match="NBPLANE_OIDC_ISSUER and NBPLANE_OIDC_CLIENT_ID"):
        authenticator_named("oidc", Settings())
    with pytest.raises(ConfigError, match="needs NBPLANE_APP_URL"):
        authenticator_named("app", Settings())
    issuer = Settings(oidc_issuer="https://login.example.org", oidc_client_id="nbplane")
    assert authenticator_named("oidc", issuer).provider == "login.example.org"


def test_earlier_oauth_settings_choose_oidc_unless_told_otherwise() -> None:
    legacy = {
        "oauth_authorize_url": "https://login.example.org/authorize",
        "oauth_token_url": "https://login.example.org/token",
        "oauth_userinfo_url": "https://login.example.org/userinfo",
        "oauth_client_id": "nbplane",
    }
    assert Settings.model_validate(legacy).resolved_authenticator == "oidc"
    told = Settings.model_validate({**legacy, "authenticator": "token"})
    assert told.resolved_authenticator == "token"
    assert Settings().resolved_authenticator == "token"
    found = authenticator_named("oidc", Settings.model_validate(legacy))
    assert isinstance(found, OidcAuthenticator)
    assert found.describe().authorize_url == legacy["oauth_authorize_url"]


def test_a_login_ends_when_its_source_says(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")
    try:
        logins = Logins(AuthService(store), FakeAuthenticator(Settings()))
        check = TokenCheck(AuthService(store), enabled=True, renew=logins.renew_if_due)
        ended = logins.log_in(Identity(user="ada", expires_at=now() - timedelta(seconds=1)))
        with pytest.raises(Unauthorized, match="expired"):
            check.authenticate(ended.token, "authorization")
        lasting = logins.log_in(Identity(user="ada", expires_at=now() + timedelta(hours=1)))
        assert check.authenticate(lasting.token, "authorization").user == "ada"
    finally:
        store.close()
