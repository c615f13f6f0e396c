"""Run numbers per job; a deployed job's runs keyed by the job, not by a scratch directory.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A deployed execution ran in a scratch directory of its own: its runs now belong to
    # ``deployed:TEAM/JOB`` so that they are numbered, listed and pruned per deployed job.
    op.execute(
        """
        UPDATE job_runs SET job_dir = (
            SELECT 'deployed:' || jobs.team || '/' || jobs.name
            FROM job_executions JOIN jobs ON jobs.id = job_executions.job_id
            WHERE job_executions.id = job_runs.execution_id
        )
        WHERE execution_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM job_executions WHERE job_executions.id = job_runs.execution_id
        )
        """
    )
    with op.batch_alter_table("job_runs") as table:
        table.add_column(sa.Column("number", sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE job_runs SET number = (
            SELECT count(*) FROM job_runs AS earlier
            WHERE earlier.job_dir = job_runs.job_dir AND earlier.id <= job_runs.id
        )
        """
    )
    with op.batch_alter_table("job_runs") as table:
        table.alter_column("number", existing_type=sa.Integer(), nullable=False)
        table.create_unique_constraint("uq_job_runs_job_dir_number", ["job_dir", "number"])


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as table:
        table.drop_constraint("uq_job_runs_job_dir_number", type_="unique")
        table.drop_column("number")
