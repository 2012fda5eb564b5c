"""idempotency: index on created_at, so records past their 24 hours are found oldest first

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 00:00:00
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_idempotency_created', 'idempotency', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_idempotency_created', table_name='idempotency')
