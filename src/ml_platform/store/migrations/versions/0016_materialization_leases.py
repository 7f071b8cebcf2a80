"""materialization runs carry a lease: who runs them, until when, and how often they started

A run is ``running`` from its request until the process doing it records the end. The
process renews ``lease_expires_at`` while it works; a sweep on any replica claims a running
run whose lease lapsed (its owner died: a crash, a SIGKILL, a lost host) with a conditional
UPDATE and runs it again, so a run no longer stays ``running`` forever. ``attempts`` counts
the starts (1 for a run started once). Runs recorded before this migration have no lease
and are claimed by the first sweep. Off 0010_features, which creates the table.

Revision ID: 0016_materialization_leases
Revises: 0010_features
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_materialization_leases"
down_revision = "0010_features"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "feature_materializations",
        sa.Column("lease_owner", sa.String(length=96), nullable=True),
    )
    op.add_column(
        "feature_materializations",
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "feature_materializations",
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("feature_materializations", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
