"""Notebook APIs: every notebook with a contract beside it, executed on request.

``contract`` (reading ``<name>.config.json``), ``validation`` (parameters and outputs against
it), ``parameters`` (the injected parameters cell), ``problems`` (how problems are worded),
``nbschema`` (pydantic models in contracts), ``catalog`` (the APIs a server offers, and to whom),
``service`` (submit, wait, cancel, read), ``lifecycle`` (the one writer of an execution's
status), ``worker`` (takes queued executions and runs them), ``engines`` (run a notebook in a
kernel), ``models`` and ``output`` (``save_output``).
"""
