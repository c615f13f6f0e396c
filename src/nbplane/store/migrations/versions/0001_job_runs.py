"""Job runs, their steps and executed notebooks; job properties and secrets.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_dir", sa.String(1024), nullable=False),
        sa.Column("job_name", sa.String(255), nullable=False),
        sa.Column("job_team", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("db_url", sa.String(1024), nullable=False),
        sa.Column("resumed", sa.Boolean(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
    )
    op.create_index("ix_job_runs_job_dir", "job_runs", ["job_dir"])
    op.create_table(
        "job_run_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("job_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("file", sa.String(1024), nullable=False),
        sa.Column("cell_number", sa.Integer(), nullable=True),
        sa.Column("cell_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("defined_names", sa.JSON(), nullable=False),
        sa.Column("unpicklable", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_job_run_steps_run_id", "job_run_steps", ["run_id"])
    op.create_index("ix_job_run_steps_chain_hash", "job_run_steps", ["chain_hash"])
    op.create_table(
        "job_run_notebooks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("job_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("file", sa.String(1024), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
    )
    op.create_index("ix_job_run_notebooks_run_id", "job_run_notebooks", ["run_id"])
    op.create_table(
        "job_state",
        sa.Column("job_key", sa.String(512), primary_key=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.LargeBinary(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("job_state")
    op.drop_table("job_run_notebooks")
    op.drop_table("job_run_steps")
    op.drop_table("job_runs")
