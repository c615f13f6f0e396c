"""Notebook APIs: contracts, the catalog, executions and their queue, workers and engines."""
