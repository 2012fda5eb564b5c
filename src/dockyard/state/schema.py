"""Tables of the store (SQLAlchemy Core).

Each resource is one row: the columns that queries filter, sort or join on,
and ``doc``, the resource in its AWS wire shape (orjson bytes) as the API
returns it. The wire shape is the model: botocore's output shapes define it,
so we keep it whole instead of re-declaring every field as a column. Columns
are indexed for every query the API makes, so latency stays flat as the
store grows. Schema changes go through Alembic (``state/migrations``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

access_keys = Table(
    "access_keys", metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret_access_key", String(128), nullable=False),
    Column("account_id", String(12), nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("principal_arn", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)

clusters = Table(
    "clusters", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    # Counters kept in the same transaction as the change that moves them, so
    # DescribeClusters reads them without counting rows.
    Column("registered_instances", Integer, nullable=False, default=0),
    Column("running_tasks", Integer, nullable=False, default=0),
    Column("pending_tasks", Integer, nullable=False, default=0),
    Column("active_services", Integer, nullable=False, default=0),
    Column("draining_services", Integer, nullable=False, default=0),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_clusters_scope_name", "account_id", "region", "name"),
)

task_definition_families = Table(
    "task_definition_families", metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("family", String(255), primary_key=True),
    # Revisions are never reused, even after deregistration or deletion.
    Column("last_revision", Integer, nullable=False),
    # Number of ACTIVE revisions, for ListTaskDefinitionFamilies(status=ACTIVE).
    Column("active_revisions", Integer, nullable=False, default=0),
)

task_definitions = Table(
    "task_definitions", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("family", String(255), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("doc", LargeBinary, nullable=False),
    UniqueConstraint("account_id", "region", "family", "revision", name="uq_taskdef_family_rev"),
    Index("ix_taskdef_status", "account_id", "region", "status", "family", "revision"),
)

container_instances = Table(
    "container_instances", metadata,
    Column("arn", String(512), primary_key=True),
    Column("cluster_arn", String(512), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("ec2_instance_id", String(64)),
    Column("status", String(32), nullable=False),
    Column("agent_connected", Boolean, nullable=False, default=False),
    Column("registered_at", Float, nullable=False),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_ci_cluster_status", "cluster_arn", "status", "registered_at"),
    Index("ix_ci_ec2_instance", "cluster_arn", "ec2_instance_id"),
)

tasks = Table(
    "tasks", metadata,
    Column("arn", String(512), primary_key=True),
    Column("cluster_arn", String(512), nullable=False),
    Column("container_instance_arn", String(512)),
    Column("family", String(255), nullable=False),
    Column("service_name", String(255)),
    Column("started_by", String(128)),
    Column("desired_status", String(32), nullable=False),
    Column("last_status", String(32), nullable=False),
    Column("launch_type", String(32)),
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_tasks_cluster_desired", "cluster_arn", "desired_status", "created_at"),
    Index("ix_tasks_instance", "container_instance_arn", "desired_status"),
    Index("ix_tasks_family", "cluster_arn", "family", "desired_status"),
    Index("ix_tasks_service", "cluster_arn", "service_name", "desired_status"),
    Index("ix_tasks_started_by", "cluster_arn", "started_by"),
    Index("ix_tasks_stopped_at", "stopped_at"),
)

services = Table(
    "services", metadata,
    Column("arn", String(512), primary_key=True),
    Column("cluster_arn", String(512), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("namespace", String(512)),
    Column("created_at", Float, nullable=False),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_services_cluster_status", "cluster_arn", "status", "name"),
    Index("ix_services_namespace", "namespace", "status"),
)

capacity_providers = Table(
    "capacity_providers", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_cp_scope_name", "account_id", "region", "name"),
)

tags = Table(
    "tags", metadata,
    Column("resource_arn", String(512), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

account_settings = Table(
    "account_settings", metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    # '' holds the account default (PutAccountSettingDefault).
    Column("principal_arn", String(512), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
)

# Client tokens of idempotent calls (RunTask, CreateService, ...).
idempotency = Table(
    "idempotency", metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("operation", String(64), primary_key=True),
    Column("token", String(128), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)
