"""Notebook sessions: per-user Jupyter servers started, hibernated and stopped by the server."""
