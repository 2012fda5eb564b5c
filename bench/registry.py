#!/usr/bin/env python
"""Registry throughput: push then pull a multi-layer image through Dockyard's /v2/ and through
Debian's `docker-registry` (the CNCF distribution registry) on the same machine, same run.

    .venv/bin/python bench/registry.py                  # 3 rounds, 4 x 50 MB layers, + a 1 GB layer for RSS
    .venv/bin/python bench/registry.py --rounds 5 --layers 8 --layer-mb 25 --big-mb 0

Needs `apt-get install docker-registry` (not started as a service: the bench runs its own on a
loopback port with a temporary storage directory and no auth).

The client speaks the OCI Distribution API directly (http.client, 8 MiB chunks), so the
numbers are the registries', not the docker CLI's gzip: layers are random bytes (a registry
never looks inside a blob). Each round, alternating which registry goes first:

* push: for every layer POST an upload, PATCH the bytes as one streamed request, PUT
  ?digest=; then PUT the manifest. MB/s = image bytes / wall time;
* pull: GET the manifest, then GET every blob (read and discarded), ``--pulls`` times (one
  pull of 200 MB from the page cache takes ~0.15 s: too short to time alone). MB/s likewise.

Dockyard gets ECR's Basic credentials (GetAuthorizationToken); distribution none. Then, for
memory: a `--big-mb` layer (default 1024) pushed to each, with the server's peak RSS read from
/proc/<pid>/status (VmHWM) before and after; the target is Dockyard under 150 MB. Prints MB/s
each way, the ratios Dockyard / distribution (target >= 1.0) and the peak RSS. A benchmark
prints; it does not assert.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.server import ServerProcess, free_port  # noqa: E402

CHUNK = 8 * 1024 * 1024
TARGET_RATIO = 1.0
TARGET_RSS_MB = 150


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Client:
    """A minimal OCI Distribution client over one kept-alive connection."""

    def __init__(self, host: str, port: int, auth: str | None) -> None:
        self.host, self.port = host, port
        self.headers = {"Authorization": auth} if auth else {}
        self.conn = http.client.HTTPConnection(host, port, timeout=300)

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
                sink: bool = False) -> tuple[int, dict[str, str], bytes]:
        h = {**self.headers, **(headers or {})}
        self.conn.request(method, path, body=body, headers=h)  # type: ignore[arg-type]
        r = self.conn.getresponse()
        if sink:  # stream the body away without keeping it
            while r.read(CHUNK):
                pass
            data = b""
        else:
            data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def push_blob(self, repo: str, path: Path, digest: str) -> None:
        status, hdrs, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202, (status, body[:300])
        location = hdrs["location"]
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        size = path.stat().st_size

        def chunks():
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    yield block
        status, hdrs, body = self.request("PATCH", location, body=chunks(),
                                          headers={"Content-Type": "application/octet-stream",
                                                   "Content-Length": str(size)})
        assert status == 202, (status, body[:300])
        location = hdrs["location"]
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        sep = "&" if "?" in location else "?"
        status, _, body = self.request("PUT", f"{location}{sep}digest={digest}", body=b"",
                                       headers={"Content-Length": "0"})
        assert status == 201, (status, body[:300])

    def put_manifest(self, repo: str, tag: str, manifest: bytes) -> None:
        status, _, body = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                       headers={"Content-Type": json.loads(manifest)["mediaType"]})
        assert status == 201, (status, body[:300])

    def pull(self, repo: str, tag: str) -> int:
        status, _, body = self.request("GET", f"/v2/{repo}/manifests/{tag}",
                                       headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert status == 200, (status, body[:300])
        m = json.loads(body)
        total = 0
        for d in [m["config"], *m["layers"]]:
            status, _, _ = self.request("GET", f"/v2/{repo}/blobs/{d['digest']}", sink=True)
            assert status == 200, status
            total += d["size"]
        return total


def make_layers(work: Path, n: int, mb: int) -> list[tuple[Path, str, int]]:
    out = []
    for i in range(n):
        p = work / f"layer{i}"
        h = hashlib.sha256()
        with open(p, "wb") as f:
            for _ in range(mb):
                block = os.urandom(1024 * 1024)
                h.update(block)
                f.write(block)
        out.append((p, "sha256:" + h.hexdigest(), mb * 1024 * 1024))
    return out


def image(work: Path, layers: list[tuple[Path, str, int]], seed: str) -> tuple[Path, str, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    cpath = work / f"config-{seed}"
    cpath.write_bytes(config)
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cdig,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": s}
                   for _, d, s in layers]}).encode()
    return cpath, cdig, manifest


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_distribution(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("docker-registry")
    if exe is None:
        sys.exit("docker-registry is not installed: apt-get install docker-registry")
    port = free_port()
    cfg = work / "distribution.yml"
    cfg.write_text(f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {work / 'distribution-data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
""")
    proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/v2/")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=50)
    ap.add_argument("--pulls", type=int, default=5, help="pulls per round (a pull is short: repeat it)")
    ap.add_argument("--big-mb", type=int, default=1024, help="the layer pushed for the peak-RSS check (0: skip)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
    server = ServerProcess(data_dir=work / "dockyard").start()
    dist, dist_port = start_distribution(work)
    try:
        ecr = server.client("ecr")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        auth = "Basic " + token  # the token is already base64("AWS:" + password)
        assert base64.b64decode(token).startswith(b"AWS:")
        clients = {"dockyard": Client("127.0.0.1", server.port, auth),
                   "distribution": Client("127.0.0.1", dist_port, None)}
        log(f"making {args.layers} x {args.layer_mb} MB random layers in {work}")
        layers = make_layers(work, args.layers, args.layer_mb)
        total_mb = sum(s for _, _, s in layers) / 1e6
        results: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in clients}
        for r in range(args.rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for name in order:
                c = clients[name]
                repo = f"bench-{r}-{name}"
                if name == "dockyard":
                    ecr.create_repository(repositoryName=repo)
                cpath, cdig, manifest = image(work, layers, f"{r}")
                t0 = time.perf_counter()
                c.push_blob(repo, cpath, cdig)
                for p, d, _ in layers:
                    c.push_blob(repo, p, d)
                c.put_manifest(repo, "v1", manifest)
                push = time.perf_counter() - t0
                t0 = time.perf_counter()
                for _ in range(args.pulls):
                    got = c.pull(repo, "v1")
                    assert got >= total_mb * 1e6
                pull = (time.perf_counter() - t0) / args.pulls
                results[name]["push"].append(total_mb / push)
                results[name]["pull"].append(total_mb / pull)
                log(f"round {r + 1} {name:<12} push {total_mb / push:7.1f} MB/s   pull {total_mb / pull:7.1f} MB/s")
                # Fresh layers are not re-pushed next round by content (a registry may skip known
                # blobs), so every round uploads to a new repository: blobs dedupe on disk.
        rss: dict[str, tuple[float, float]] = {}
        if args.big_mb:
            big = make_layers(work, 1, args.big_mb)
            for name, c in clients.items():
                pid = server.proc.pid if name == "dockyard" else dist.pid  # type: ignore[union-attr]
                before = peak_rss_mb(pid)
                repo = f"bench-big-{name}"
                if name == "dockyard":
                    ecr.create_repository(repositoryName=repo)
                t0 = time.perf_counter()
                c.push_blob(repo, big[0][0], big[0][1])
                secs = time.perf_counter() - t0
                rss[name] = (before, peak_rss_mb(pid))
                log(f"{name}: {args.big_mb} MB layer pushed in {secs:.1f} s ({args.big_mb / secs:.0f} MB/s); "
                    f"peak RSS {rss[name][0]:.0f} -> {rss[name][1]:.0f} MB")
    finally:
        dist.kill()
        dist.wait()
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nregistry push/pull, {args.layers} x {args.layer_mb} MB layers ({total_mb:.0f} MB), "
          f"{args.rounds} rounds, medians:")
    for name in clients:
        print(f"  {name:<12} push {statistics.median(results[name]['push']):7.1f} MB/s   "
              f"pull {statistics.median(results[name]['pull']):7.1f} MB/s")
    ratios = {}
    for way in ("push", "pull"):
        ratios[way] = statistics.median(results["dockyard"][way]) / statistics.median(results["distribution"][way])
        per = [a / b for a, b in zip(results["dockyard"][way], results["distribution"][way], strict=True)]
        ok = "PASS" if ratios[way] >= TARGET_RATIO else "FAIL"
        print(f"  ratio dockyard / distribution, {way}: {ratios[way]:.2f}x (per round "
              f"{min(per):.2f}-{max(per):.2f})  target >= {TARGET_RATIO}: {ok}")
    if rss:
        peak = rss["dockyard"][1]
        ok = "PASS" if peak < TARGET_RSS_MB else "FAIL"
        print(f"  peak RSS pushing {args.big_mb} MB: dockyard {peak:.0f} MB (target < {TARGET_RSS_MB}: {ok}), "
              f"distribution {rss['distribution'][1]:.0f} MB")
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    out = results_dir / time.strftime("registry-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"results": results, "ratios": ratios, "rss": rss, "args": vars(args)}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
