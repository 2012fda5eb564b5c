"""tasks: index for the service scheduler (a service's live and recently stopped tasks)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:50:00
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_service_stopped', ['cluster_arn', 'service_name', 'stopped_at', 'arn'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_service_stopped')
