"""ECR: repositories, images, tags, layers, references, upload sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ecr_repositories',
        sa.Column('arn', sa.String(length=512), nullable=False),
        sa.Column('account_id', sa.String(length=12), nullable=False),
        sa.Column('region', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=256), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('doc', sa.LargeBinary(), nullable=False),
        sa.Column('policy', sa.LargeBinary(), nullable=True),
        sa.Column('lifecycle_policy', sa.LargeBinary(), nullable=True),
        sa.Column('lifecycle_updated_at', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('arn'),
        sa.UniqueConstraint('account_id', 'region', 'name', name='uq_ecr_repositories_name'),
    )
    op.create_table(
        'ecr_images',
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.Column('media_type', sa.String(length=128), nullable=False),
        sa.Column('artifact_media_type', sa.String(length=128), nullable=True),
        sa.Column('manifest', sa.LargeBinary(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('pushed_at', sa.Float(), nullable=False),
        sa.Column('last_pulled_at', sa.Float(), nullable=True),
        sa.Column('doc', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('repository_arn', 'digest'),
    )
    op.create_index('ix_ecr_images_pushed', 'ecr_images', ['repository_arn', 'pushed_at'])
    op.create_table(
        'ecr_image_tags',
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('tag', sa.String(length=300), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint('repository_arn', 'tag'),
    )
    op.create_index('ix_ecr_image_tags_digest', 'ecr_image_tags', ['repository_arn', 'digest'])
    op.create_table(
        'ecr_layers',
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('media_type', sa.String(length=128), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('repository_arn', 'digest'),
    )
    op.create_index('ix_ecr_layers_digest', 'ecr_layers', ['digest'])
    op.create_table(
        'ecr_image_refs',
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('image_digest', sa.String(length=80), nullable=False),
        sa.Column('ref_digest', sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint('repository_arn', 'image_digest', 'ref_digest'),
    )
    op.create_index('ix_ecr_image_refs_ref', 'ecr_image_refs', ['ref_digest'])
    op.create_table(
        'ecr_uploads',
        sa.Column('upload_id', sa.String(length=64), nullable=False),
        sa.Column('repository_arn', sa.String(length=512), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('upload_id'),
    )
    op.create_index('ix_ecr_uploads_updated', 'ecr_uploads', ['updated_at'])


def downgrade() -> None:
    op.drop_table('ecr_uploads')
    op.drop_table('ecr_image_refs')
    op.drop_table('ecr_layers')
    op.drop_table('ecr_image_tags')
    op.drop_table('ecr_images')
    op.drop_table('ecr_repositories')
