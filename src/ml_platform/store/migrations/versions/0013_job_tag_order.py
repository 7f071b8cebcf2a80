"""tag-filtered lists in list order: the job's created_at on its tag rows, and an index

A branch of its own off 0001; ``Database.upgrade`` goes to ``heads``. A list filtered by a tag
walks ``ix_job_tags_listed`` (tenant, key, value, created_at, job_id) in the list's order and
joins each job by primary key, so "one tag, page 50" reads 2,550 index entries and 50 jobs
instead of sorting every tagged job (issue 15). ``created_at`` is copied from the job (it
never changes); the store writes it with each tag.

Revision ID: 0013_job_tag_order
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_job_tag_order"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE job_tags SET created_at = "
        "(SELECT jobs.created_at FROM jobs WHERE jobs.id = job_tags.job_id)"
    )
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_tags_listed",
            ["tenant_id", "key", "value", "created_at", "job_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tags_listed")
        batch_op.drop_column("created_at")
