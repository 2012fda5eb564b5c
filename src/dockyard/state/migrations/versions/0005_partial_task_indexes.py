"""tasks: the service, startedBy and stoppedAt indexes hold only the tasks that have one

A task outside a service, without startedBy, or not stopped yet (every RunTask) then writes
5 index entries fewer; every query on those indexes compares the column (``= ?``, ``< ?``),
which both SQLite and PostgreSQL know excludes NULL, so they still use them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 23:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# name -> (columns, the column that must be set)
_INDEXES = {
    'ix_tasks_service': (['cluster_arn', 'service_name', 'desired_status', 'arn'], 'service_name'),
    'ix_tasks_service_counts': (['cluster_arn', 'service_name', 'started_by', 'last_status'], 'service_name'),
    'ix_tasks_service_stopped': (['cluster_arn', 'service_name', 'stopped_at', 'arn'], 'service_name'),
    'ix_tasks_started_by': (['cluster_arn', 'started_by', 'desired_status', 'arn'], 'started_by'),
    'ix_tasks_stopped_at': (['stopped_at'], 'stopped_at'),
}


def upgrade() -> None:
    for name, (cols, col) in _INDEXES.items():
        op.drop_index(name, table_name='tasks')
        where = sa.text(f'{col} IS NOT NULL')
        op.create_index(name, 'tasks', cols, unique=False, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, (cols, _) in _INDEXES.items():
        op.drop_index(name, table_name='tasks')
        op.create_index(name, 'tasks', cols, unique=False)
