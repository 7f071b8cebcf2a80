"""a covering index for tag-filtered job counts

A branch of its own off 0001; ``Database.upgrade`` goes to ``heads``. A list filtered by tags
counts its ``total`` from ``ix_job_tags_lookup`` (the tag ranges, joined by job id); with a
status or framework filter too, each matching job id is probed in this index, which holds both
columns, so the count never reads a jobs row (index-only on SQLite, and on PostgreSQL once
vacuum has marked the pages visible).

Revision ID: 0012_job_indexes
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0012_job_indexes"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_id_status_framework", ["id", "status", "framework"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_id_status_framework")
