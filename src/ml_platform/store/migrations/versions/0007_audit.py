"""audit events (who did what: every mutating request and every authentication failure)

A branch of its own off 0001 (like 0002, 0003 and 0005); ``Database.upgrade`` goes to
``heads``. No foreign key to tenants: a deleted tenant's trail outlives it.

Revision ID: 0007_audit
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_audit"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("principal", sa.String(length=255), nullable=True),
        sa.Column("credential", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=512), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_occurred_at", ["occurred_at"], unique=False)
        batch_op.create_index(
            "ix_audit_events_tenant_occurred", ["tenant_id", "occurred_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_action_occurred", ["action", "occurred_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_action_occurred")
        batch_op.drop_index("ix_audit_events_tenant_occurred")
        batch_op.drop_index("ix_audit_events_occurred_at")
    op.drop_table("audit_events")
