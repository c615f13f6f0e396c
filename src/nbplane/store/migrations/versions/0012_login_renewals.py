"""Login renewals: an OpenID Connect login's refresh token, sealed, and when to use it next.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_renewals",
        sa.Column(
            "token_id",
            sa.Integer,
            sa.ForeignKey("api_tokens.id", ondelete="CASCADE", name="login_renewals_token_id_fkey"),
            primary_key=True,
        ),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("renew_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_renewals")
