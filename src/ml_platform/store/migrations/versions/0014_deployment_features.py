"""deployments may take their model's inputs from feature views: feature_refs and entity_key

A deployment created with ``feature_refs`` (ordered ``view:feature``) and ``entity_key`` (the
join key a Predict request carries) looks the features up online at prediction time. Both
columns are NULL for deployments without features. It branches off 0006 rather than 0001
because it alters the deployments table, which 0004 creates (0006 alters it too).

Revision ID: 0014_deployment_features
Revises: 0006_deployment_model_fk
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_deployment_features"
down_revision = "0006_deployment_model_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("deployments", sa.Column("feature_refs", json_type, nullable=True))
    op.add_column("deployments", sa.Column("entity_key", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("entity_key")
        batch_op.drop_column("feature_refs")
