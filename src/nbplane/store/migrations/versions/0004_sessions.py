"""Sessions: users' Jupyter servers, named connections and their grants.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("resource_class", sa.String(63), nullable=False),
        sa.Column("image", sa.String(1024), nullable=True),
        sa.Column("directory", sa.String(1024), nullable=True),
        sa.Column("repository", sa.String(1024), nullable=True),
        sa.Column("commit", sa.String(255), nullable=True),
        sa.Column("secrets", sa.LargeBinary(), nullable=False),
        sa.Column("token_name", sa.String(255), nullable=True),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("launcher", sa.String(32), nullable=False),
        sa.Column("launcher_state", sa.JSON(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("url", sa.String(1024), nullable=True),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hibernated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sessions_owner", "sessions", ["owner"])
    op.create_index("ix_sessions_status", "sessions", ["status"])
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
    )
    op.create_table(
        "connection_grants",
        sa.Column(
            "connection_id",
            sa.Integer(),
            sa.ForeignKey("connections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("grantee_kind", sa.String(8), primary_key=True),
        sa.Column("grantee", sa.String(255), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("connection_grants")
    op.drop_table("connections")
    op.drop_index("ix_sessions_status", "sessions")
    op.drop_index("ix_sessions_owner", "sessions")
    op.drop_table("sessions")
