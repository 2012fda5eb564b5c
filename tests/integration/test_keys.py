"""`dockyard keys`: keys the server accepts, an account per key, deletion takes effect."""

import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError


def keys_cli(server, *args):
    out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir",
                          str(server.data_dir), *args], capture_output=True, text=True, check=True)
    return out.stdout


def new_key(server, *args):
    out = keys_cli(server, "create", *args)
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]


def test_key_of_another_account_sees_only_its_own_clusters(server, ecs, name):
    ecs.create_cluster(clusterName=name)
    key, secret = new_key(server, "--account-id", "111122223333", "--user", "alice")
    other = server.client("ecs", key=key, secret=secret)
    arn = other.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    assert ":111122223333:cluster/" in arn
    assert all(":111122223333:" in a for a in other.list_clusters()["clusterArns"])
    assert arn not in ecs.list_clusters()["clusterArns"]


def test_region_comes_from_the_signature_scope(server, name):
    eu = server.client("ecs", region="eu-west-1")
    arn = eu.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    assert arn.startswith("arn:aws:ecs:eu-west-1:")
    assert arn not in server.client("ecs").list_clusters()["clusterArns"]


def test_deleted_key_is_refused(server):
    key, secret = new_key(server)
    client = server.client("ecs", key=key, secret=secret)
    client.list_clusters()
    assert key in keys_cli(server, "list")
    keys_cli(server, "delete", key)
    deadline = time.monotonic() + 5
    while True:
        try:
            client.list_clusters()
        except ClientError as e:
            assert e.response["Error"]["Code"] == "UnrecognizedClientException"
            break
        assert time.monotonic() < deadline, "deleted key still accepted after 5 s"
        time.sleep(0.2)


def test_invalid_account_id_is_refused(server):
    r = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir",
                        str(server.data_dir), "create", "--account-id", "12"], capture_output=True, text=True)
    assert r.returncode == 2
    with pytest.raises(subprocess.CalledProcessError):
        keys_cli(server, "delete", "AKIANOSUCHKEY")
