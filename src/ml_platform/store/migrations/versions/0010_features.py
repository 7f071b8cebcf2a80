"""feature store: entities, versioned feature views, materialization runs, online rows

A branch of its own off 0001 (like 0007); ``Database.upgrade`` goes to ``heads``. The online
rows carry no foreign key: the Redis online store has none either, and deleting a view
deletes its rows explicitly.

Revision ID: 0010_features
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_features"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "feature_entities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("join_keys", _JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("feature_entities"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_entities")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_feature_entities_tenant_name"),
    )
    op.create_index(
        "ix_feature_entities_tenant_created",
        "feature_entities",
        ["tenant_id", "created_at", "id"],
    )
    op.create_table(
        "feature_views",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=63), nullable=False),
        sa.Column("features", _JSON, nullable=False),
        sa.Column("source", _JSON, nullable=False),
        sa.Column("timestamp_field", sa.String(length=255), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("feature_views"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_views")),
        sa.UniqueConstraint("tenant_id", "name", "version", name="uq_feature_views_tenant_name"),
    )
    op.create_index(
        "ix_feature_views_tenant_created", "feature_views", ["tenant_id", "created_at", "id"]
    )
    op.create_table(
        "feature_materializations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("view", sa.String(length=63), nullable=False),
        sa.Column("view_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("keys_written", sa.Integer(), nullable=False),
        sa.Column("watermark_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watermark_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        _tenant_fk("feature_materializations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_materializations")),
    )
    op.create_index(
        "ix_feature_materializations_view",
        "feature_materializations",
        ["tenant_id", "view", "started_at", "id"],
    )
    op.create_table(
        "feature_online_rows",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("view", sa.String(length=63), nullable=False),
        sa.Column("entity_key", sa.String(length=1024), nullable=False),
        sa.Column("feature_values", _JSON, nullable=False),
        sa.Column("event_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "view", "entity_key", name=op.f("pk_feature_online_rows")
        ),
    )


def downgrade() -> None:
    op.drop_table("feature_online_rows")
    op.drop_index("ix_feature_materializations_view", table_name="feature_materializations")
    op.drop_table("feature_materializations")
    op.drop_index("ix_feature_views_tenant_created", table_name="feature_views")
    op.drop_table("feature_views")
    op.drop_index("ix_feature_entities_tenant_created", table_name="feature_entities")
    op.drop_table("feature_entities")
