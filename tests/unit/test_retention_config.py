"""A job's ``[retention]`` in config.ini, and how it combines with NBPLANE_RETENTION_* and the
options of ``nbplane job prune``."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbplane.errors import JobDefinitionError
from nbplane.jobs.definition import load_config
from nbplane.jobs.retention import retention_of
from nbplane.settings import Settings


def config_with(tmp_path: Path, section: str) -> dict[str, float]:
    (tmp_path / "config.ini").write_text(f"[retention]\n{section}\n")
    return load_config(tmp_path).retention


def test_config_overrides_the_settings_and_options_override_both(tmp_path: Path) -> None:
    configured = config_with(tmp_path, "keep_runs = 5\nkeep_days = 1.5")
    assert configured == {"keep_runs": 5, "keep_days": 1.5}
    settings = Settings(home=tmp_path, retention_keep_runs=7, retention_keep_outputs=3)
    found = retention_of(settings, configured, {"keep_runs": None, "keep_days": 0})
    assert (found.keep_runs, found.keep_days, found.keep_outputs) == (5, 0, 3)


def test_a_job_without_retention_has_none_of_its_own(tmp_path: Path) -> None:
    assert load_config(tmp_path).retention == {}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("keep_runs = -1", "keep_runs must be a whole number of at least 0 (0 keeps forever)"),
        ("keep_runs = 2.5", "keep_runs must be a whole number of at least 0"),
        ("keep_days = nan", "keep_days must be a number of at least 0"),
        ("keep_outputs = all", "keep_outputs must be a whole number of at least 0"),
        ("keep = 3", "unknown setting [retention] keep; known: keep_runs, keep_days, keep_outputs"),
    ],
)
def test_a_bad_retention_says_which_setting(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(JobDefinitionError) as raised:
        config_with(tmp_path, section)
    assert message in raised.value.message
    assert raised.value.fields["file"] == "config.ini"
    assert raised.value.fields["field"].startswith("retention.keep")
