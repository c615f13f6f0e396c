"""The rule for job and team names, shared by every noun that carries one; light, since a job
run's start-up checks its team's name."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""Job and team names: they become directory names, Kubernetes labels and URL segments."""


def check_name(value: str, what: str) -> str:
    if not re.match(NAME_PATTERN, value):
        raise ValueError(
            f"{what} {value!r} must be 1-63 characters of lowercase letters, digits, '_', "
            "'.', '-', starting with a letter or digit"
        )
    return value
