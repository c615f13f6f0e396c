"""nbplane's own database: the only code that touches SQL tables of ours."""

from nbplane.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
