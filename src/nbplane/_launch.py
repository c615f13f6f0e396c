"""The ``nbplane`` command's first module: hands ``nbplane job run`` to a warm runner
(nbplane/_warm.py) when one runs; every other command, and ``job run`` when no runner takes
it, goes on to the normal CLI in this same process, exactly as without a runner."""

from __future__ import annotations

import sys

from nbplane._warm import warm_run


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["job", "run"]:
        code = warm_run(argv)
        if code is not None:
            sys.exit(code)
    from nbplane.cli import main as cli_main

    cli_main()
