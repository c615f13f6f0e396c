"""Retries of deployed jobs: a deployment's retry policy, copied onto each execution, and each
attempt of an execution recorded.

Revision ID: 0008
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def retry_policy() -> list[sa.Column[object]]:
    return [
        sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_delay", sa.Float(), nullable=False, server_default="60"),
        sa.Column("retry_on", sa.String(16), nullable=False, server_default="any"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        for column in retry_policy():
            table.add_column(column)
    with op.batch_alter_table("job_executions") as table:
        for column in retry_policy():
            table.add_column(column)
        table.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "job_execution_attempts",
        sa.Column(
            "execution_id",
            sa.String(36),
            sa.ForeignKey("job_executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    # an execution that ran before this revision was its own first and only attempt
    op.execute(
        "INSERT INTO job_execution_attempts "
        "(execution_id, number, status, reason, started_at, finished_at) "
        "SELECT id, 1, status, reason, started_at, finished_at FROM job_executions "
        "WHERE started_at IS NOT NULL"
    )
    op.execute("UPDATE job_executions SET attempt = 1 WHERE started_at IS NOT NULL")


def downgrade() -> None:
    op.drop_table("job_execution_attempts")
    with op.batch_alter_table("job_executions") as table:
        for name in ("retry_at", "attempt", "retry_on", "retry_delay", "retries"):
            table.drop_column(name)
    with op.batch_alter_table("deployments") as table:
        for name in ("retry_on", "retry_delay", "retries"):
            table.drop_column(name)
