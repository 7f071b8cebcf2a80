"""administrators and tenant quotas

``api_keys.is_admin`` marks an administrator's key (the ``/v1/admin/...`` routes);
``tenant_quotas`` holds the per-tenant overrides of the quota defaults in Settings, one row per
tenant that has any, a NULL column meaning "the platform default". A branch of its own off
0001 (like 0002, 0003, 0005 and 0007); ``Database.upgrade`` goes to ``heads``.

Revision ID: 0008_quotas
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_quotas"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "tenant_quotas",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True),
        sa.Column("max_gpus", sa.Integer(), nullable=True),
        sa.Column("max_cpu_cores", sa.Float(), nullable=True),
        sa.Column("max_memory_gb", sa.Float(), nullable=True),
        sa.Column("max_queued_jobs", sa.Integer(), nullable=True),
        sa.Column("max_deployments", sa.Integer(), nullable=True),
        sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_quotas_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_quotas")),
    )


def downgrade() -> None:
    op.drop_table("tenant_quotas")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
