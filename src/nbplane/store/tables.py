"""Tables of nbplane's own database (SQLAlchemy Core: the ORM's import alone costs a tenth of a
short job run, and the store needs no identity map)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_dir", String(1024), nullable=False, index=True),
    Column("job_name", String(255), nullable=False),
    Column("job_team", String(255)),
    Column("status", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("arguments", JSON, nullable=False),
    Column("db_url", String(1024), nullable=False),
    Column("resumed", Boolean, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("error", JSON),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
)

job_run_steps = Table(
    "job_run_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("job_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),
    Column("name", String(1024), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("file", String(1024), nullable=False),
    Column("cell_number", Integer),
    Column("cell_id", String(255)),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("duration", Float),
    Column("code_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False, index=True),
    Column("error", JSON),
    Column("defined_names", JSON, nullable=False),
    Column("unpicklable", JSON, nullable=False),
    Column("outputs", JSON, nullable=False),
    Column("checkpoint", LargeBinary),
)

job_run_notebooks = Table(
    "job_run_notebooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("job_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("file", String(1024), nullable=False),
    Column("content", Text, nullable=False),
)

job_state = Table(
    "job_state",
    metadata,
    Column("job_key", String(512), primary_key=True),
    Column("properties", JSON, nullable=False),
    Column("secrets", LargeBinary),
)
"""Properties (plain JSON) and secrets (Fernet ciphertext) kept per job between runs."""
