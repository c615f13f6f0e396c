# local shim for tests in the authn worktree only (never committed)
from nbplane.apis.engines.isolated import IsolatedEngine as ShellIsolatedEngine
from nbplane.apis.engines.reuse import ReuseEngine as ShellReuseEngine

__all__ = ["ShellIsolatedEngine", "ShellReuseEngine"]
