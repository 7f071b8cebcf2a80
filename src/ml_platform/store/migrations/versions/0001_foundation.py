"""foundation: tenants, api keys, jobs

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (tenant_id, status, framework, n)
        VALUES (NEW.tenant_id, NEW.status, NEW.framework, 1)
        ON CONFLICT (tenant_id, status, framework) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER job_counts_update AFTER UPDATE OF status, framework ON jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.framework IS NOT NEW.framework BEGIN
        UPDATE job_counts SET n = n - 1
        WHERE tenant_id = OLD.tenant_id AND status = OLD.status AND framework = OLD.framework;
        INSERT INTO job_counts (tenant_id, status, framework, n)
        VALUES (NEW.tenant_id, NEW.status, NEW.framework, 1)
        ON CONFLICT (tenant_id, status, framework) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1
        WHERE tenant_id = OLD.tenant_id AND status = OLD.status AND framework = OLD.framework;
    END
    """,
]

POSTGRES_TRIGGER = [
    """
    CREATE FUNCTION job_counts_maintain() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE job_counts SET n = n - 1
            WHERE tenant_id = OLD.tenant_id AND status = OLD.status
              AND framework = OLD.framework;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO job_counts AS c (tenant_id, status, framework, n)
            VALUES (NEW.tenant_id, NEW.status, NEW.framework, 1)
            ON CONFLICT (tenant_id, status, framework) DO UPDATE SET n = c.n + 1;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER job_counts_insert_delete AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_counts_maintain()
    """,
    """
    CREATE TRIGGER job_counts_update AFTER UPDATE OF status, framework ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.framework IS DISTINCT FROM NEW.framework)
    EXECUTE FUNCTION job_counts_maintain()
    """,
]


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_api_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_tenant_id", ["tenant_id"], unique=False)
        batch_op.create_index("ix_api_keys_prefix", ["prefix"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "env_vars",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "resource_usage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_jobs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index(
            "ix_jobs_tenant_created", ["tenant_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_tenant_framework_created",
            ["tenant_id", "framework", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_jobs_tenant_status_created",
            ["tenant_id", "status", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_tags_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "key", name=op.f("pk_job_tags")),
    )
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_tags_lookup", ["tenant_id", "key", "value", "job_id"], unique=False
        )

    op.create_table(
        "job_counts",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "status", "framework", name=op.f("pk_job_counts")),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_TRIGGER if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER job_counts_update ON jobs")
        op.execute("DROP TRIGGER job_counts_insert_delete ON jobs")
        op.execute("DROP FUNCTION job_counts_maintain()")
    else:
        for name in ("job_counts_insert", "job_counts_update", "job_counts_delete"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("job_counts")
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tags_lookup")

    op.drop_table("job_tags")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_status_created")
        batch_op.drop_index("ix_jobs_tenant_framework_created")
        batch_op.drop_index("ix_jobs_tenant_created")
        batch_op.drop_index("ix_jobs_status_created")

    op.drop_table("jobs")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_prefix")
        batch_op.drop_index("ix_api_keys_tenant_id")

    op.drop_table("api_keys")
    op.drop_table("tenants")
