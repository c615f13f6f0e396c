"""Database URLs as people see them: never a password, and for a deployed job's log never the
server's paths."""

from __future__ import annotations

import pytest

from nbplane.platform.dburl import redact_url


@pytest.mark.parametrize(
    ("url", "hide_path", "shown"),
    [
        ("postgresql+psycopg://ann:s3cret@db/wh", False, "postgresql+psycopg://ann:***@db/wh"),
        ("postgresql+psycopg://ann:s3cret@db/wh", True, "postgresql+psycopg://ann:***@db/wh"),
        ("postgresql://db/wh?password=s3cret&sslmode=require", False, None),
        ("sqlite:////srv/nbplane/teams/a/warehouse.sqlite", False, None),
        ("sqlite:////srv/nbplane/teams/a/warehouse.sqlite", True, "sqlite:///…/warehouse.sqlite"),
        ("not a url", True, "(not a database URL)"),
    ],
)
def test_redact_url(url: str, hide_path: bool, shown: str | None) -> None:
    redacted = redact_url(url, hide_path=hide_path)

    assert "s3cret" not in redacted
    if shown is not None:
        assert redacted == shown
    if hide_path:
        assert "/srv/" not in redacted
    elif url.startswith("sqlite"):
        assert "/srv/nbplane/teams/a/warehouse.sqlite" in redacted
