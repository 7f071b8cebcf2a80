"""stored_objects: the data files and code packages each tenant is charged storage for

One row per (tenant, kind, key): a data-area file (``data``, ``data/<path>``) or a code
package the tenant owns (``code_package``, ``sha256:<hex>``), with its size; the storage
quota (``max_storage_bytes``) sums them with the model versions' artifact sizes. A branch of
its own off 0001 (like 0007 to 0013): it creates a table and alters none, and
``Database.upgrade`` goes to ``heads``. Objects stored before it have no row (uncounted until
they are uploaded again); the migration cannot list the object store.

Revision ID: 0015_stored_objects
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_stored_objects"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_objects",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=1100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_stored_objects_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "key", name=op.f("pk_stored_objects")),
    )


def downgrade() -> None:
    op.drop_table("stored_objects")
