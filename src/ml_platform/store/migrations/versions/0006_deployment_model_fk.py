"""deployments reference their model: a foreign key (tenant_id, model) -> models (tenant_id, name)

Revision ID: 0006_deployment_model_fk
Revises: 0004
Create Date: 2026-12-01

Deleting a model and creating a deployment of it could both commit on PostgreSQL (each checked
the other's absence before the other committed), leaving a deployment of nothing. With the key,
the database settles the race: the deletion fails while a deployment exists (409) and a
deployment of a deleted model is refused. Deployments whose model is already gone cannot serve
anything; they are removed before the key is added.
"""

from __future__ import annotations

from alembic import op

revision = "0006_deployment_model_fk"
down_revision = "0004"
branch_labels = None
depends_on = None

FK_NAME = "fk_deployments_model_models"


def upgrade() -> None:
    op.execute(
        "DELETE FROM deployments WHERE NOT EXISTS (SELECT 1 FROM models "
        "WHERE models.tenant_id = deployments.tenant_id AND models.name = deployments.model)"
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_foreign_key(
            FK_NAME, "models", ["tenant_id", "model"], ["tenant_id", "name"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_constraint(FK_NAME, type_="foreignkey")
