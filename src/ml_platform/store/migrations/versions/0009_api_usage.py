"""api usage: requests per UTC day, tenant, API version, method and route template

A branch of its own off 0001 (like 0007); ``Database.upgrade`` goes to ``heads``. No foreign
key to tenants: the usage of a deleted tenant outlives it.

Revision ID: 0009_api_usage
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_api_usage"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("api_version", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=255), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "tenant_id", "api_version", "method", "route", name=op.f("pk_api_usage")
        ),
    )
    with op.batch_alter_table("api_usage", schema=None) as batch_op:
        batch_op.create_index("ix_api_usage_tenant_day", ["tenant_id", "day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_api_usage_tenant_day")
    op.drop_table("api_usage")
