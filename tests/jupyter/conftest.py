"""pytest-jupyter's fixtures (a real Jupyter server per test, ``jp_fetch``) for these tests only:
imported here rather than named in ``pytest_plugins``, which would make its autouse fixtures
and hooks (a ServerApp cleanup and a new event loop around every test) apply to the whole
suite."""

from pytest_jupyter.jupyter_server import *  # noqa: F403
