"""Runs inside a reuse engine's warm kernel: the state the setup cells left, kept once and put
back after every request, so that every request starts from that state and nothing of one
caller's request (a parameter, a name a cell assigned, a shadowed builtin) reaches the next.

Put back: the user namespace (names a request added are removed, names it rebound get their
setup value again, so ``len = 0`` or ``str = None`` go too), the ``builtins`` module's names,
IPython's output caches (``_``, ``__``, ``___``, ``Out`` and its reprs, ``In``, its hidden
names), and ``sys.last_*`` (the last exception, whose traceback holds a request's frames). Not
put back: objects changed in place (a list a request cell appended to), other modules' state,
environment variables, files; those change only by what the notebook's own cells do.

The engine sends this file's source to the kernel, which may not be able to import nbplane, and
runs it as the module ``__nbplane_baseline__``: it binds no name in the user's namespace.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

MODULE = "__nbplane_baseline__"
_SYS_LAST = ("last_type", "last_value", "last_traceback", "last_exc")
_MISSING = object()
_saved: dict[str, Any] = {}


def keep() -> None:
    """Remember the state as it is now: right after the setup cells ran."""
    from IPython import get_ipython

    shell = get_ipython()
    history = shell.history_manager
    hook = shell.displayhook
    # IPython adds these to builtins while a cell runs, and takes them away after
    trapped = frozenset(getattr(shell.builtin_trap, "auto_builtins", {}))
    _saved.clear()
    _saved.update(
        shell=shell,
        namespace=dict(shell.user_ns),
        hidden=dict(shell.user_ns_hidden),
        trapped=trapped,
        builtins={name: value for name, value in vars(builtins).items() if name not in trapped},
        out=dict(history.output_hist),
        out_reprs=dict(history.output_hist_reprs),
        parsed=list(history.input_hist_parsed),
        raw=list(history.input_hist_raw),
        unders=(hook._, hook.__, hook.___),
        sys_last={name: getattr(sys, name, _MISSING) for name in _SYS_LAST},
    )


def restore() -> None:
    """Put back what :func:`keep` remembered."""
    shell = _saved["shell"]
    history = shell.history_manager
    _put_back(shell.user_ns, _saved["namespace"])
    _put_back(shell.user_ns_hidden, _saved["hidden"])
    _put_back(vars(builtins), _saved["builtins"], ignore=_saved["trapped"])
    _put_back(history.output_hist, _saved["out"])
    _put_back(history.output_hist_reprs, _saved["out_reprs"])
    history.input_hist_parsed[:] = _saved["parsed"]
    history.input_hist_raw[:] = _saved["raw"]
    hook = shell.displayhook
    hook._, hook.__, hook.___ = _saved["unders"]
    for name, value in _saved["sys_last"].items():
        if value is _MISSING:
            if hasattr(sys, name):
                delattr(sys, name)
        else:
            setattr(sys, name, value)


def _put_back(
    target: dict[str, Any], saved: dict[str, Any], ignore: frozenset[str] = frozenset()
) -> None:
    for name in [name for name in target if name not in saved and name not in ignore]:
        del target[name]
    for name, value in saved.items():
        if target.get(name, _MISSING) is not value:
            target[name] = value
