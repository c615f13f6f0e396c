"""One trust boundary: owned API executions, expiring tokens, execution credentials, per-user
session limits.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as table:
        table.add_column(sa.Column("owner", sa.String(255), nullable=True))
        table.add_column(sa.Column("team", sa.String(63), nullable=True))
        table.create_index("ix_executions_owner", ["owner"])
    with op.batch_alter_table("api_tokens") as table:
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("job_executions") as table:
        table.add_column(sa.Column("token_hash", sa.String(64), nullable=True))
        table.create_index("ix_job_executions_token_hash", ["token_hash"], unique=True)
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("max_sessions", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.drop_column("max_sessions")
    with op.batch_alter_table("job_executions") as table:
        table.drop_index("ix_job_executions_token_hash")
        table.drop_column("token_hash")
    with op.batch_alter_table("api_tokens") as table:
        table.drop_column("expires_at")
    with op.batch_alter_table("executions") as table:
        table.drop_index("ix_executions_owner")
        table.drop_column("team")
        table.drop_column("owner")
