import os
import uuid

import pytest

# Tests never reach out: a missing key must not send boto3 to instance metadata,
# and Terraform must not phone home.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["CHECKPOINT_DISABLE"] = "1"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from tests.helpers.server import ServerProcess


@pytest.fixture(scope="session")
def server():
    s = ServerProcess().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="session")
def pg():
    """One private PostgreSQL server for the session; tests take a database each (create_database)."""
    from tests.helpers.postgres import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def ecs(server):
    return server.client("ecs")


@pytest.fixture
def name():
    """A unique resource name, so tests sharing the session server never collide."""
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture
def cluster(ecs, name):
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    return arn
