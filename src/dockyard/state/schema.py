"""Tables of the store (SQLAlchemy Core).

Each resource is one row: the columns that queries filter, sort or join on,
and ``doc``, the resource in its AWS wire shape (orjson bytes) as the API
returns it. The wire shape is the model: botocore's output shapes define it,
so we keep it whole instead of re-declaring every field as a column. Columns
are indexed for every query the API makes, so latency stays flat as the
store grows. Schema changes go through Alembic (``state/migrations``).
"""

from __future__ import annotations

from typing import Any

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
    text,
)

metadata = MetaData()


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, for both dialects."""
    where = text(condition)
    return {"sqlite_where": where, "postgresql_where": where}


def _set(column: str) -> dict[str, Any]:
    """Only the rows where ``column`` is set."""
    return _where(f"{column} IS NOT NULL")

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
    Index("ix_clusters_scope_status", "account_id", "region", "status", "name"),
)

# Family names compare bytewise (SQLite's BINARY; "C" on PostgreSQL), so prefix
# ranges and keyset paging order exactly as the Python side expects.
_FAMILY = String(255).with_variant(String(255, collation="C"), "postgresql")

task_definition_families = Table(
    "task_definition_families", metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("family", _FAMILY, primary_key=True),
    # Revisions are never reused, even after deregistration or deletion.
    Column("last_revision", Integer, nullable=False),
    # Number of ACTIVE revisions; ``status`` is ACTIVE while it is above 0, else INACTIVE,
    # so ListTaskDefinitionFamilies(status=...) is an index range. DELETED once no revision
    # is left at all (services/ecs/taskdef_purge.py): no longer listed, revisions still counted.
    Column("active_revisions", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Index("ix_taskdef_families_status", "account_id", "region", "status", "family"),
)

task_definitions = Table(
    "task_definitions", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("family", _FAMILY, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("doc", LargeBinary, nullable=False),
    UniqueConstraint("account_id", "region", "family", "revision", name="uq_taskdef_family_rev"),
    # Latest ACTIVE revision of a family, and ListTaskDefinitions, are ranges of this index.
    Index("ix_taskdef_status", "account_id", "region", "status", "family", "revision"),
    # The revisions waiting to be purged (services/ecs/taskdef_purge.py; migration 0007).
    Index("ix_taskdef_deleting", "arn", **_where("status = 'DELETE_IN_PROGRESS'")),
)

container_instances = Table(
    "container_instances", metadata,
    Column("arn", String(512), primary_key=True),
    Column("cluster_arn", String(512), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("ec2_instance_id", String(64)),
    Column("status", String(32), nullable=False),
    # Set by the agent channel when the agent's session comes up or goes away.
    Column("agent_connected", Boolean, nullable=False, default=False),
    Column("registered_at", Float, nullable=False),
    # ContainerInstance.version; placement commits check it (optimistic concurrency).
    Column("version", Integer, nullable=False, default=1),
    # What placed tasks leave free, kept in the transaction that places or releases them.
    Column("remaining_cpu", Integer, nullable=False, default=0),
    Column("remaining_memory", Integer, nullable=False, default=0),
    # Host ports held by tasks (not the reserved ones): orjson {"tcp": [...], "udp": [...]}.
    Column("used_ports", LargeBinary, nullable=False),
    # runningTasksCount (desiredStatus RUNNING, not yet stopped) and pendingTasksCount.
    Column("running_tasks", Integer, nullable=False, default=0),
    Column("pending_tasks", Integer, nullable=False, default=0),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_ci_cluster_status", "cluster_arn", "status", "arn"),
    Index("ix_ci_cluster", "cluster_arn", "arn"),
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
    Column("group_name", String(255)),
    Column("desired_status", String(32), nullable=False),
    Column("last_status", String(32), nullable=False),
    Column("launch_type", String(32)),
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float),
    # What the task holds on its instance until it is STOPPED: orjson
    # {"cpu", "memory", "tcp": [...], "udp": [...]}; NULL once released (or never placed).
    Column("held", LargeBinary),
    Column("doc", LargeBinary, nullable=False),
    # ListTasks pages in ARN order within each filter, so every filter has an index ending in arn.
    Index("ix_tasks_cluster_desired", "cluster_arn", "desired_status", "arn"),
    Index("ix_tasks_instance", "container_instance_arn", "desired_status", "arn"),
    Index("ix_tasks_family", "cluster_arn", "family", "desired_status", "arn"),
    # The service, startedBy and stoppedAt indexes hold only rows that have one (migration 0005):
    # a RunTask outside a service writes 5 index entries fewer. Queries compare the column, so
    # both SQLite and PostgreSQL still pick them.
    Index("ix_tasks_service", "cluster_arn", "service_name", "desired_status", "arn", **_set("service_name")),
    # Covers a service's running/pending counts per deployment (DescribeServices) without a sort.
    Index("ix_tasks_service_counts", "cluster_arn", "service_name", "started_by", "last_status",
          **_set("service_name")),
    Index("ix_tasks_started_by", "cluster_arn", "started_by", "desired_status", "arn", **_set("started_by")),
    Index("ix_tasks_launch_type", "cluster_arn", "launch_type", "desired_status", "arn"),
    Index("ix_tasks_group", "cluster_arn", "group_name", "desired_status"),
    Index("ix_tasks_stopped_at", "stopped_at", **_set("stopped_at")),
    # A service's live tasks (stopped_at NULL) and those stopped since a time: the service scheduler.
    Index("ix_tasks_service_stopped", "cluster_arn", "service_name", "stopped_at", "arn", **_set("service_name")),
)

services = Table(
    "services", metadata,
    Column("arn", String(512), primary_key=True),
    Column("cluster_arn", String(512), nullable=False),
    Column("name", String(255), nullable=False),
    # ACTIVE | DRAINING | INACTIVE; a controller reconciles ACTIVE and DRAINING ones.
    Column("status", String(32), nullable=False),
    # Service Connect namespace (name or ARN as given), for ListServicesByNamespace.
    Column("namespace", String(512)),
    # ListServices filters; launch_type is NULL for a capacity provider strategy.
    Column("launch_type", String(32)),
    Column("scheduling_strategy", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    # The Service in its wire shape, deployments (PRIMARY first) and the newest 100 events
    # included; runningCount/pendingCount are counted from tasks when it is read.
    Column("doc", LargeBinary, nullable=False),
    Index("ix_services_cluster_status", "cluster_arn", "status", "name"),
    Index("ix_services_namespace", "namespace", "status", "arn"),
)

# Service revisions (DescribeServiceRevisions): what one deployment rolls out.
service_revisions = Table(
    "service_revisions", metadata,
    Column("arn", String(512), primary_key=True),
    Column("service_arn", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_service_revisions_service", "service_arn", "created_at"),
)

# Service deployments (Describe/List/StopServiceDeployment), one per Service.deployments[].id.
service_deployments = Table(
    "service_deployments", metadata,
    Column("arn", String(512), primary_key=True),
    Column("service_arn", String(512), nullable=False),
    # The ecs-svc/<digits> id of the matching Service.deployments[] entry.
    Column("deployment_id", String(64), nullable=False),
    # ServiceDeploymentStatus (PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, ...).
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("doc", LargeBinary, nullable=False),
    Index("ix_service_deployments_service", "service_arn", "created_at", "arn"),
    Index("ix_service_deployments_id", "service_arn", "deployment_id"),
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
    # Tokens live 24 hours; the expiry controller deletes the oldest first (migration 0006).
    Index("ix_idempotency_created", "created_at"),
)

# -- ECR ---------------------------------------------------------------------------------------
# Blobs live on disk, content-addressed (dockyard/registry/blobs.py); these tables say which
# repository holds what. A repository's name is unique per account and region.

ecr_repositories = Table(
    "ecr_repositories", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    # The Repository in its wire shape (repositoryUri, imageTagMutability, scanning, encryption).
    Column("doc", LargeBinary, nullable=False),
    # The repository policy and lifecycle policy texts as given (JSON), or NULL.
    Column("policy", LargeBinary),
    Column("lifecycle_policy", LargeBinary),
    Column("lifecycle_updated_at", Float),
    UniqueConstraint("account_id", "region", "name", name="uq_ecr_repositories_name"),
)

# One row per image manifest (an image or an image index) in a repository.
ecr_images = Table(
    "ecr_images", metadata,
    Column("repository_arn", String(512), primary_key=True),
    Column("digest", String(80), primary_key=True),  # sha256:<64 hex> of the manifest bytes
    Column("media_type", String(128), nullable=False),
    Column("artifact_media_type", String(128)),       # the config's media type, when it has one
    Column("manifest", LargeBinary, nullable=False),  # the exact bytes pushed
    Column("size", Integer, nullable=False),          # imageSizeInBytes: config + layers
    Column("pushed_at", Float, nullable=False),
    Column("last_pulled_at", Float),
    # Scan status and findings, other per-image facts (wire shapes).
    Column("doc", LargeBinary, nullable=False),
    Index("ix_ecr_images_pushed", "repository_arn", "pushed_at"),
)

ecr_image_tags = Table(
    "ecr_image_tags", metadata,
    Column("repository_arn", String(512), primary_key=True),
    Column("tag", String(300), primary_key=True),
    Column("digest", String(80), nullable=False),
    Index("ix_ecr_image_tags_digest", "repository_arn", "digest"),
)

# Blobs a repository holds (uploaded to it, mounted into it, or referenced by its manifests):
# what BatchCheckLayerAvailability and blob GETs answer from.
ecr_layers = Table(
    "ecr_layers", metadata,
    Column("repository_arn", String(512), primary_key=True),
    Column("digest", String(80), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("media_type", String(128)),
    Column("created_at", Float, nullable=False),
    Index("ix_ecr_layers_digest", "digest"),
)

# Which blobs and child manifests each manifest references (garbage collection marks from here).
ecr_image_refs = Table(
    "ecr_image_refs", metadata,
    Column("repository_arn", String(512), primary_key=True),
    Column("image_digest", String(80), primary_key=True),
    Column("ref_digest", String(80), primary_key=True),
    Index("ix_ecr_image_refs_ref", "ref_digest"),
)

# Upload sessions (ECR's InitiateLayerUpload and the registry's /v2/.../blobs/uploads/).
ecr_uploads = Table(
    "ecr_uploads", metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("repository_arn", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("size", Integer, nullable=False),  # bytes received so far
    Index("ix_ecr_uploads_updated", "updated_at"),
)

# -- Advisories and image scans (ECR basic scanning) ------------------------------------------
# OSV advisories as loaded (`dockyard advisories load`), the (ecosystem, package) pairs each one
# names (what a scan looks packages up by), and each image's latest scan with its findings.

advisories = Table(
    "advisories", metadata,
    Column("id", String(128), primary_key=True),
    Column("modified", String(64), nullable=False),
    Column("loaded_at", Float, nullable=False),
    Column("doc", LargeBinary, nullable=False),  # the OSV record (orjson)
    Index("ix_advisories_loaded", "loaded_at"),
)

advisory_packages = Table(
    "advisory_packages", metadata,
    Column("ecosystem", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),  # PyPI names are PEP 503-normalised
    Column("advisory_id", String(128), primary_key=True),
    Index("ix_advisory_packages_advisory", "advisory_id"),
)

ecr_image_scans = Table(
    "ecr_image_scans", metadata,
    Column("repository_arn", String(512), primary_key=True),
    Column("digest", String(80), primary_key=True),
    Column("status", String(32), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED
    Column("started_at", Float, nullable=False),
    Column("completed_at", Float),
    Column("source_updated_at", Float),
    # orjson list of ImageScanFinding wire shapes, most severe first.
    Column("findings", LargeBinary),
    Index("ix_ecr_image_scans_status", "status"),
)
