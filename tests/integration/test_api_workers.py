"""``dockyard server --api-workers``: a worker process serves the API beside the server process.

The server's other tests run with the default (one worker on a machine with two CPUs); these
check what is particular to the split: where requests are served, that a write answered by a
worker is there for any connection's next read, that agents and the registry still reach the
server process, and that workers come and go with it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.server import BANNER, ServerProcess


def children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def pings(endpoint: str) -> bool:
    try:
        return requests.get(endpoint + "/ping", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(data_dir=tmp_path, api_workers=1).start()
    yield s
    s.cleanup()


def test_the_worker_serves_the_api_and_the_server_process_does_not_accept(server: ServerProcess) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert len(workers) == 1
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="w")
    # The connections are the worker's: the server process has no TCP connection on the port.
    port = f":{server.port:04X}"
    def tcp_inodes(pid: int) -> set[str]:
        fds = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if link.startswith("socket:["):
                fds.add(link[8:-1])
        return fds
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(port) and parts[3] == "01":  # local port, ESTABLISHED
                    established.add(parts[9])
    assert established & tcp_inodes(workers[0])
    assert not established & tcp_inodes(server.proc.pid)


def test_a_write_is_there_for_the_next_read_on_any_connection(server: ServerProcess) -> None:
    writer, reader = server.client("ecs"), server.client("ecs")
    for i in range(30):
        writer.create_cluster(clusterName=f"c{i}")
        td = writer.register_task_definition(family=f"f{i}", containerDefinitions=[
            {"name": "a", "image": "127.0.0.1:5000/x:1", "memory": 32}])["taskDefinition"]
        assert reader.describe_clusters(clusters=[f"c{i}"])["clusters"][0]["status"] == "ACTIVE"
        assert reader.describe_task_definition(taskDefinition=td["taskDefinitionArn"])[
            "taskDefinition"]["revision"] == 1
    # errors come back as the AWS error, and write nothing
    with pytest.raises(writer.exceptions.ClusterNotFoundException):
        writer.create_service(cluster="nope", serviceName="s", taskDefinition="f0:1", desiredCount=1)
    assert reader.list_services(cluster="c0")["serviceArns"] == []


def test_agents_and_the_registry_reach_the_server_process(server: ServerProcess) -> None:
    # The registry's answer (its auth challenge), not the API's "Missing Authentication Token".
    r = requests.get(server.endpoint + "/v2/", timeout=5)
    assert r.status_code == 401 and "Basic" in r.headers.get("www-authenticate", "")
    # An ECR call (its reads go to the server process too) and the registry agree.
    ecr = server.client("ecr")
    ecr.create_repository(repositoryName="app")
    auth = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    r = requests.get(server.endpoint + "/v2/_catalog", headers={"Authorization": "Basic " + auth}, timeout=5)
    assert r.status_code == 200 and r.json()["repositories"] == ["app"]
    # A blob pushed in one request whose first read holds more than the hand-off chunk.
    blob = os.urandom(300_000)
    import hashlib
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    r = requests.post(server.endpoint + f"/v2/app/blobs/uploads/?digest={digest}", data=blob,
                      headers={"Authorization": "Basic " + auth, "Content-Type": "application/octet-stream"},
                      timeout=10)
    assert r.status_code == 201, r.text
    r = requests.get(server.endpoint + f"/v2/app/blobs/{digest}", headers={"Authorization": "Basic " + auth},
                     timeout=10)
    assert r.status_code == 200 and r.content == blob


def test_a_worker_that_dies_is_replaced(server: ServerProcess) -> None:
    assert server.proc is not None
    (first,) = children(server.proc.pid)
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="before")
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: [p for p in children(server.proc.pid) if p != first and alive(p)])

    def serving() -> bool:
        try:
            return server.client("ecs").describe_clusters(clusters=["before"])["clusters"][0]["status"] == "ACTIVE"
        except Exception:
            return False
    assert wait_for(serving)
    server.client("ecs").create_cluster(clusterName="after")


def test_workers_go_with_the_server_process_and_a_new_one_takes_the_port(server: ServerProcess) -> None:
    assert server.proc is not None
    (worker,) = children(server.proc.pid)
    server.client("ecs").create_cluster(clusterName="kept")
    server.kill9()
    assert wait_for(lambda: not alive(worker), timeout=15)
    server.start()
    assert server.client("ecs").describe_clusters(clusters=["kept"])["clusters"][0]["status"] == "ACTIVE"


def test_api_workers_0_serves_everything_in_one_process(tmp_path: Path) -> None:
    s = ServerProcess(data_dir=tmp_path, api_workers=0).start()
    try:
        assert s.proc is not None and children(s.proc.pid) == []
        ecs = s.client("ecs")
        ecs.create_cluster(clusterName="one")
        assert ecs.describe_clusters(clusters=["one"])["clusters"][0]["status"] == "ACTIVE"
    finally:
        s.cleanup()


def test_a_new_server_waits_for_the_port_while_an_old_worker_still_holds_it(server: ServerProcess) -> None:
    """A worker outliving its killed server must not share the port with the next server."""
    import subprocess

    assert server.proc is not None
    (old,) = children(server.proc.pid)
    server.client("ecs").create_cluster(clusterName="kept")
    os.kill(old, signal.SIGSTOP)  # it cannot see its server go, nor leave, until continued
    server.kill9()
    new = subprocess.Popen(server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        # still waiting for the port: no worker of its own yet
        assert new.poll() is None and children(new.pid) == []
        os.kill(old, signal.SIGCONT)
        assert wait_for(lambda: not alive(old), timeout=15)
        assert wait_for(lambda: len(children(new.pid)) == 1, timeout=30)
        assert wait_for(lambda: pings(server.endpoint))
        assert server.client("ecs").describe_clusters(clusters=["kept"])["clusters"][0]["status"] == "ACTIVE"
    finally:
        new.send_signal(signal.SIGINT)
        new.wait(timeout=20)


def test_ctrl_c_to_the_process_group_stops_the_server_and_its_worker_once(tmp_path: Path) -> None:
    import subprocess

    s = ServerProcess(data_dir=tmp_path, api_workers=1)
    with open(tmp_path / "out.log", "wb") as log:
        proc = subprocess.Popen(s.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(lambda: BANNER in (tmp_path / "out.log").read_bytes(), timeout=30)
        (worker,) = children(proc.pid)
        assert pings(s.endpoint)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(timeout=20) == 0
        assert not alive(worker)
        out = (tmp_path / "out.log").read_text()
        assert "starting another" not in out and "stopped" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("workers", [0, 1])
def test_port_0_serves_on_the_port_the_banner_names(tmp_path: Path, workers: int) -> None:
    import re
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "server", "--port", "0",
                             "--api-workers", str(workers), "--data-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            m = re.search(r"registry on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port and port != 0
        assert wait_for(lambda: pings(f"http://127.0.0.1:{port}"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
