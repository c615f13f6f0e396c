"""nbplane: Jupyter notebooks as data jobs, with steps, SQL cells, ``job_input`` and resume.

``%load_ext nbplane`` in IPython or Jupyter adds the ``%job``, ``%%sql`` and ``%job_run`` magics.
In a notebook API, ``nbplane.save_output(obj)`` saves what the API returns.
"""

from __future__ import annotations

from typing import Any

from nbplane.apis.output import save_output

__all__ = ["load_ipython_extension", "save_output"]

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    from nbplane.ipython.magics import load

    load(ipython)
