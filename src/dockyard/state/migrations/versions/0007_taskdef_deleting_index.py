"""task_definitions: a partial index on the revisions in DELETE_IN_PROGRESS, which the purge looks for

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 05:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("status = 'DELETE_IN_PROGRESS'")
    op.create_index('ix_taskdef_deleting', 'task_definitions', ['arn'], unique=False,
                    sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index('ix_taskdef_deleting', table_name='task_definitions')
