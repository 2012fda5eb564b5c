"""Advisories (OSV) and ECR image scans

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'advisories',
        sa.Column('id', sa.String(length=128), nullable=False),
        sa.Column('modified', sa.String(length=64), nullable=False),
        sa.Column('loaded_at', sa.Float(), nullable=False),
        sa.Column('doc', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_advisories_loaded', 'advisories', ['loaded_at'])
    op.create_table(
        'advisory_packages',
        sa.Column('ecosystem', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('advisory_id', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('ecosystem', 'name', 'advisory_id'),
    )
    op.create_index('ix_advisory_packages_advisory', 'advisory_packages', ['advisory_id'])
    op.create_table(
        'ecr_image_scans',
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('started_at', sa.Float(), nullable=False),
        sa.Column('completed_at', sa.Float(), nullable=True),
        sa.Column('source_updated_at', sa.Float(), nullable=True),
        sa.Column('findings', sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint('repository_arn', 'digest'),
    )
    op.create_index('ix_ecr_image_scans_status', 'ecr_image_scans', ['status'])


def downgrade() -> None:
    op.drop_table('ecr_image_scans')
    op.drop_table('advisory_packages')
    op.drop_table('advisories')
