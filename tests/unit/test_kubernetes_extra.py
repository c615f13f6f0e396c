"""The Kubernetes client is the extra ``nbplane[kubernetes]``: without it, choosing the
Kubernetes executor or launcher says what to install, and nothing else needs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nbplane.deployments.executors import executor_named
from nbplane.errors import ConfigError
from nbplane.sessions.launchers import launcher_named
from nbplane.settings import Settings

KUBERNETES_MODULES = (
    "nbplane.platform.kube",
    "nbplane.deployments.executors.kubernetes",
    "nbplane.sessions.launchers.kubernetes",
)


@pytest.fixture
def without_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import kubernetes`` fails as if the extra were not installed."""
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    for name in [name for name in sys.modules if name.startswith(KUBERNETES_MODULES)]:
        monkeypatch.delitem(sys.modules, name)  # with a package's modules (launchers.kubernetes)


@pytest.mark.usefixtures("without_kubernetes")
def test_kubernetes_executor_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'nbplane\[kubernetes\]'"):
        executor_named("kubernetes", Settings(home=tmp_path))


@pytest.mark.usefixtures("without_kubernetes")
def test_kubernetes_launcher_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'nbplane\[kubernetes\]'"):
        launcher_named("kubernetes", Settings(home=tmp_path))


@pytest.mark.usefixtures("without_kubernetes")
def test_local_executor_and_launcher_need_no_kubernetes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sandbox="none")
    assert executor_named("local", settings).name == "local"
    assert launcher_named("local", settings).name == "local"
