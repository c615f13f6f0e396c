"""Settings that cannot be used stop a command with one line naming each variable, never with
pydantic's traceback and never echoing the value (it may be a secret)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbplane.errors import ConfigError
from nbplane.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_bad_values_are_named_without_their_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBPLANE_LOG_FORMAT", "xml-secret")
    monkeypatch.setenv("NBPLANE_SMTP_PORT", "abc-secret")
    with pytest.raises(ConfigError) as raised:
        get_settings()
    message = raised.value.message
    assert "NBPLANE_LOG_FORMAT: Input should be 'text' or 'json'" in message
    assert "NBPLANE_SMTP_PORT" in message
    assert "secret" not in message
    assert raised.value.fields == {"field": "log_format"}


def test_good_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBPLANE_LOG_FORMAT", "json")
    assert get_settings().log_format == "json"
