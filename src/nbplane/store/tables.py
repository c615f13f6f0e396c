"""SQLAlchemy tables of nbplane's own database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class JobRunRow(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_dir: Mapped[str] = mapped_column(String(1024), index=True)
    job_name: Mapped[str] = mapped_column(String(255))
    job_team: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    db_url: Mapped[str] = mapped_column(String(1024))
    resumed: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)

    steps: Mapped[list[RunStepRow]] = relationship(
        back_populates="run", order_by="RunStepRow.position", cascade="all, delete-orphan"
    )
    notebooks: Mapped[list[RunNotebookRow]] = relationship(cascade="all, delete-orphan")


class RunStepRow(Base):
    __tablename__ = "job_run_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(String(1024))
    cell_number: Mapped[int | None] = mapped_column(Integer)
    cell_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration: Mapped[float | None] = mapped_column(Float)
    code_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    defined_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    unpicklable: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    run: Mapped[JobRunRow] = relationship(back_populates="steps")


class RunNotebookRow(Base):
    __tablename__ = "job_run_notebooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"), index=True)
    file: Mapped[str] = mapped_column(String(1024))
    content: Mapped[str] = mapped_column(Text)


class JobStateRow(Base):
    """Properties (plain JSON) and secrets (Fernet ciphertext) kept per job between runs."""

    __tablename__ = "job_state"

    job_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary)
