"""tag rows carry their job's status and framework, kept by triggers; the indexes cover them

Merges 0012 and 0013. A list filtered by tags and a status or framework counted its total by
probing the jobs index once per tagged job (5,000 probes for one tag of a 100k-job tenant: tens
of ms on PostgreSQL). Each tag row now holds a copy of its job's ``status`` and ``framework``,
and both tag indexes end with them, so every tag-filtered count and page is cut from the tag
indexes alone; ``ix_jobs_id_status_framework`` (0012), which only those probes used, goes.

The copies are kept by the database, as ``job_counts`` is (0001): a tag row takes its job's
values when inserted, and a job's status or framework change rewrites its tag rows, whatever
code writes the jobs.

Revision ID: 0017_job_tag_status
Revises: 0012_job_indexes, 0013_job_tag_order
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_job_tag_status"
down_revision = ("0012_job_indexes", "0013_job_tag_order")
branch_labels = None
depends_on = None

LOOKUP = ["tenant_id", "key", "value", "job_id", "status", "framework"]
LISTED = ["tenant_id", "key", "value", "created_at", "job_id", "status", "framework"]

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER job_tags_copy_job AFTER INSERT ON job_tags BEGIN
        UPDATE job_tags
        SET status = (SELECT status FROM jobs WHERE jobs.id = NEW.job_id),
            framework = (SELECT framework FROM jobs WHERE jobs.id = NEW.job_id)
        WHERE job_id = NEW.job_id AND key = NEW.key;
    END
    """,
    """
    CREATE TRIGGER jobs_copy_to_tags AFTER UPDATE OF status, framework ON jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.framework IS NOT NEW.framework BEGIN
        UPDATE job_tags SET status = NEW.status, framework = NEW.framework
        WHERE job_id = NEW.id;
    END
    """,
]
SQLITE_DROP = ["DROP TRIGGER jobs_copy_to_tags", "DROP TRIGGER job_tags_copy_job"]

POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION job_tags_copy_job() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT jobs.status, jobs.framework INTO NEW.status, NEW.framework
        FROM jobs WHERE jobs.id = NEW.job_id;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER job_tags_copy_job BEFORE INSERT OR UPDATE OF job_id ON job_tags
    FOR EACH ROW EXECUTE FUNCTION job_tags_copy_job()
    """,
    """
    CREATE FUNCTION jobs_copy_to_tags() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE job_tags SET status = NEW.status, framework = NEW.framework
        WHERE job_id = NEW.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER jobs_copy_to_tags AFTER UPDATE OF status, framework ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.framework IS DISTINCT FROM NEW.framework)
    EXECUTE FUNCTION jobs_copy_to_tags()
    """,
]
POSTGRES_DROP = [
    "DROP TRIGGER jobs_copy_to_tags ON jobs",
    "DROP FUNCTION jobs_copy_to_tags()",
    "DROP TRIGGER job_tags_copy_job ON job_tags",
    "DROP FUNCTION job_tags_copy_job()",
]


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("framework", sa.String(32), nullable=True))
        batch_op.drop_index("ix_job_tags_lookup")
        batch_op.drop_index("ix_job_tags_listed")
    op.execute(
        "UPDATE job_tags SET "
        "status = (SELECT jobs.status FROM jobs WHERE jobs.id = job_tags.job_id), "
        "framework = (SELECT jobs.framework FROM jobs WHERE jobs.id = job_tags.job_id)"
    )
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.create_index("ix_job_tags_lookup", LOOKUP, unique=False)
        batch_op.create_index("ix_job_tags_listed", LISTED, unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_id_status_framework")
    for statement in POSTGRES_TRIGGERS if _postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in POSTGRES_DROP if _postgres() else SQLITE_DROP:
        op.execute(statement)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_id_status_framework", ["id", "status", "framework"], unique=False
        )
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tags_listed")
        batch_op.drop_index("ix_job_tags_lookup")
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_tags_lookup", ["tenant_id", "key", "value", "job_id"], unique=False
        )
        batch_op.create_index("ix_job_tags_listed", LISTED[:5], unique=False)
        batch_op.drop_column("framework")
        batch_op.drop_column("status")
