"""One loader picks executors, launchers and engines by name, and says what is wrong if not."""

from __future__ import annotations

import pytest

from nbplane.apis.engines.reuse import ReuseEngine
from nbplane.apis.engines.shell import ShellIsolatedEngine, ShellReuseEngine
from nbplane.apis.worker import ENGINES
from nbplane.deployments.executors import EXECUTORS, executor_named
from nbplane.deployments.executors.local import LocalExecutor
from nbplane.errors import ConfigError
from nbplane.sessions.launchers import LAUNCHERS
from nbplane.settings import Settings


def test_registered_names_load_nbplane_own_classes(tmp_path) -> None:
    assert EXECUTORS.names() == ["kubernetes", "local"]
    assert LAUNCHERS.names() == ["kubernetes", "local"]
    assert ENGINES.names() == ["isolated", "kernel-isolated", "kernel-reuse", "reuse"]
    assert ENGINES.load("isolated") is ShellIsolatedEngine
    assert ENGINES.load("reuse") is ShellReuseEngine
    assert ENGINES.load("kernel-reuse") is ReuseEngine
    assert isinstance(executor_named("local", Settings(home=tmp_path)), LocalExecutor)


def test_a_class_path_loads_an_unregistered_implementation() -> None:
    assert EXECUTORS.load("nbplane.deployments.executors.local:LocalExecutor") is LocalExecutor


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown session launcher 'nope'; choose one of kubernetes, local"),
        ("nbplane.no_such_module:Launcher", "cannot load session launcher"),
        ("nbplane.sessions.launchers.local:NoSuchClass", "cannot load session launcher"),
        ("nbplane.apis.engines.reuse:ReuseEngine", "which is not a SessionLauncher"),
    ],
)
def test_a_bad_name_is_a_config_error_naming_the_setting(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        LAUNCHERS.load(name)
    assert caught.value.fields["field"] == "NBPLANE_SESSION_LAUNCHER"


@pytest.mark.parametrize("name", ["isolated", "reuse", "kernel-reuse"])
def test_a_worker_makes_engines_with_the_pool_limits_of_the_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbplane.apis.engines.warm import WarmEngine
    from nbplane.settings import get_settings

    def limits() -> tuple[int, int, float]:
        engine = ENGINES.load(name).for_worker(3)
        assert isinstance(engine, (ShellIsolatedEngine, WarmEngine))
        return engine.pool_min, engine.pool_max, engine.idle_seconds

    assert limits() == (1, 3, 60)  # the worker's --pool-size is the default most
    monkeypatch.setenv("NBPLANE_POOL_MIN", "9")
    monkeypatch.setenv("NBPLANE_POOL_MAX", "2")
    monkeypatch.setenv("NBPLANE_POOL_IDLE_SECONDS", "5")
    get_settings.cache_clear()
    assert limits() == (2, 2, 5)  # a minimum above the most is the most
