"""job log lines in the database (readable from every replica while a job runs and after)

A branch of its own off 0001; ``Database.upgrade`` goes to ``heads``. One row per log line,
keyed by (job_id, line_id): the line id is the job's 1-based line number, the SSE event id.
No foreign key to jobs, like the audit trail: lines are written by the scheduler replica
without a read of the job row.

Revision ID: 0011_scaleout
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_scaleout"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_log_lines",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "line_id", name=op.f("pk_job_log_lines")),
    )


def downgrade() -> None:
    op.drop_table("job_log_lines")
