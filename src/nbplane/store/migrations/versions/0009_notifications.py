"""Notifications: a deployment's targets, and the outbox of an execution's notifications.

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("notifications", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "job_notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "execution_id",
            sa.String(36),
            sa.ForeignKey("job_executions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("sealed_url", sa.Text(), nullable=True),
        sa.Column("to", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("execution_id", "target", "event", name="uq_job_notifications_event"),
    )
    op.create_index("ix_job_notifications_execution_id", "job_notifications", ["execution_id"])
    op.create_index("ix_job_notifications_status", "job_notifications", ["status"])


def downgrade() -> None:
    op.drop_index("ix_job_notifications_status", "job_notifications")
    op.drop_index("ix_job_notifications_execution_id", "job_notifications")
    op.drop_table("job_notifications")
    with op.batch_alter_table("deployments") as table:
        table.drop_column("notifications")
