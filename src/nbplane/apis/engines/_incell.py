"""Runs inside a kernel: several cells in one execute request (the reuse engine's fast path).

Every execute request costs an ipykernel about 3 ms of round trips and bookkeeping, however
small its code; a reuse execution is mostly that (the parameters cell and one or two cells).
``run_cells`` runs the cells one after the other with IPython's own ``run_cell``, as the kernel
would, and after each cell publishes a marker display (after flushing stdout and stderr, so that
every output before it belongs to that cell) saying whether it succeeded; it stops at the first
failure, whose traceback IPython has already published. A successful last cell needs no marker
(the request's end says it), nor does a successful injected parameters cell (it has no outputs).
The engine then files each output under the cell it belongs to, as if the cells had been sent
one by one.

Imported by the kernel through the driver code the engine sends; it touches nothing in the
user's namespace.
"""

from __future__ import annotations

import sys

CELL_END = "application/vnd.nbplane.cell-end+json"


def run_cells(sources: list[str], quiet_first: bool = False) -> None:
    """Run ``sources`` in turn; ``quiet_first``: no marker after a successful first cell (the
    engine files any output before the next marker under the second cell)."""
    from IPython import get_ipython
    from IPython.display import publish_display_data

    shell = get_ipython()
    # IPython decides whether a trailing ';' silences a cell's result from the last cell in its
    # history; these cells are kept out of the history (it would grow by every request), so
    # each one is put there only while it runs.
    parsed = getattr(getattr(shell, "history_manager", None), "input_hist_parsed", None)
    last = len(sources) - 1
    for number, source in enumerate(sources):
        if isinstance(parsed, list):
            parsed.append(source)
        try:
            ok = bool(shell.run_cell(source, store_history=False).success)
        finally:
            if isinstance(parsed, list) and parsed and parsed[-1] is source:
                parsed.pop()
        if ok and number == last:
            return
        if ok and number == 0 and quiet_first:
            continue
        _flush()  # the cell's buffered text goes out before the marker
        publish_display_data({CELL_END: {"cell": number, "ok": ok}})
        if not ok:
            return
        # Wait until the IOPub thread has handed the marker to ZMQ: a next cell that kills the
        # process at once (os._exit, a crash) must not take the marker down with it, or its
        # death would be blamed on this cell.
        if sys.stdout is not None:
            sys.stdout.flush()


def _flush() -> None:
    """Send the text the cell wrote; ipykernel's flush waits for its IOPub thread to do it.

    A stream known to hold nothing is skipped (ipykernel 7 keeps pending text in ``_buffers``):
    each flush is a round trip to that thread.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and getattr(stream, "_buffers", True):
            stream.flush()
