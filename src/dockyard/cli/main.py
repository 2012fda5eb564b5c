"""The ``dockyard`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dockyard import __version__


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("DOCKYARD_DATA_DIR") or Path.home() / ".dockyard").resolve()


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the store, keys and credentials live "
                   "(default: $DOCKYARD_DATA_DIR or ~/.dockyard)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default: SQLite in the data "
                   "directory; postgresql+psycopg://... for PostgreSQL)")


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dockyard.state.store import Store

    data_dir = _data_dir(args.data_dir)
    store = Store(args.database_url or f"sqlite:///{data_dir / 'dockyard.db'}")
    store.migrate()
    return store


def cmd_server(args: argparse.Namespace) -> int:
    from dockyard.api.server import ServerConfig, run

    cfg = ServerConfig(host=args.host, port=args.port, data_dir=_data_dir(args.data_dir),
                       database_url=args.database_url, api_workers=args.api_workers)
    return run(cfg)


def cmd_keys(args: argparse.Namespace) -> int:
    from dockyard.state import keys

    if args.keys_cmd == "create" and args.account_id is not None and not (
            len(args.account_id) == 12 and args.account_id.isdigit()):
        print("--account-id must be 12 digits", file=sys.stderr)
        return 2
    store = _store(args)
    if args.keys_cmd == "create":
        with store.transaction() as tx:
            key = keys.create(tx, args.user, args.account_id)
        print(f"export AWS_ACCESS_KEY_ID={key.access_key_id}")
        print(f"export AWS_SECRET_ACCESS_KEY={key.secret_access_key}")
        return 0
    if args.keys_cmd == "list":
        with store.transaction() as tx:
            rows = keys.list_keys(tx)
        print(f"{'ACCESS KEY ID':<22} {'ACCOUNT':<13} {'USER':<20} STATUS")
        for key_id, account, user, status, _ in rows:
            print(f"{key_id:<22} {account:<13} {user:<20} {status}")
        return 0
    if args.keys_cmd == "delete":
        with store.transaction() as tx:
            found = keys.delete_key(tx, args.access_key_id)
        if not found:
            print(f"no such access key: {args.access_key_id}", file=sys.stderr)
            return 1
        print(f"deleted {args.access_key_id}")
        return 0
    return 2


def cmd_advisories(args: argparse.Namespace) -> int:
    from dockyard.scan import advisories

    path = Path(args.file)
    if not path.exists():
        print(f"no such file or directory: {path}", file=sys.stderr)
        return 1
    store = _store(args)
    try:
        with store.transaction() as tx:
            n = advisories.load(tx, advisories.read_path(path))
    except advisories.AdvisoryError as e:
        print(f"dockyard advisories: {e}", file=sys.stderr)
        return 1
    print(f"loaded {n} advisories from {path}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import logging

    import uvloop

    from dockyard.agent.main import AgentConfig, AgentError, run_agent

    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else Path.home() / ".dockyard" / "agent"
    cfg = AgentConfig(server=args.server, cluster=args.cluster, data_dir=data_dir, region=args.region,
                      availability_zone=args.availability_zone, reserved_memory=args.reserved_memory,
                      driver=args.driver, bind_ip=args.bind_ip, pull_behavior=args.pull_behavior,
                      stop_timeout=args.stop_timeout,
                      credentials_file=Path(args.credentials_file).expanduser() if args.credentials_file else None,
                      profile=args.profile)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        uvloop.run(run_agent(cfg))
    except AgentError as e:
        print(f"dockyard agent: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from dockyard.api.server import ServerConfig
    from dockyard.cli import up

    cfg = ServerConfig(host=args.host, port=args.port, data_dir=_data_dir(args.data_dir),
                       database_url=args.database_url, api_workers=args.api_workers)
    options: dict[str, object] = {"bind_ip": args.bind_ip, "pull_behavior": args.pull_behavior}
    if args.availability_zone:
        options["availability_zone"] = args.availability_zone
    return up.run(cfg, options)


def _add_server_args(p: argparse.ArgumentParser) -> None:
    from dockyard.api.server import DEFAULT_PORT

    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    p.add_argument("--api-workers", type=int, default=None, metavar="N",
                   help="processes that serve the AWS APIs beside the server process, on the same port: "
                        "they answer reads and hand writes to the server process, the store's one writer; "
                        "0 serves everything in one process (default: 1 on a machine with 2 or more CPUs, "
                        "else 0)")
    _add_store_args(p)


def _add_runtime_args(p: argparse.ArgumentParser, bind_ip: str) -> None:
    p.add_argument("--bind-ip", default=bind_ip,
                   help=f"host address task containers' published ports bind to (default: {bind_ip})")
    p.add_argument("--pull-behavior", choices=["default", "always", "once", "prefer-cached"], default="default",
                   help="when images are pulled, as ECS_IMAGE_PULL_BEHAVIOR (default: default)")


def _add_up_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser(
        "up", help="all in one: the server and a local agent on this machine's Docker engine",
        description="Make sure the Docker engine is installed and running (as root: apt-get install docker.io, "
                    "then start dockerd), then run the server and one agent in one process. The agent has an "
                    "access key of its own and joins the cluster `default` (created if absent). Ctrl-C stops "
                    "both; task containers keep running and are adopted by the next `dockyard up`.")
    _add_server_args(u)
    _add_runtime_args(u, bind_ip="127.0.0.1")
    u.add_argument("--availability-zone", help="the local instance's ecs.availability-zone (default: us-east-1a)")
    u.set_defaults(fn=cmd_up)


def _add_agent_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser(
        "agent", help="run tasks on this host: register it as a container instance of a cluster",
        description="Register this host as a container instance of CLUSTER on the Dockyard server at URL and "
                    "run the tasks placed on it, until SIGINT/SIGTERM (task containers keep running and are "
                    "adopted by the next start). Credentials: the agent's own access key (`dockyard keys "
                    "create --user agent` on the server) from --credentials-file, else AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY, else the AWS shared-credentials file (~/.aws/credentials).")
    a.add_argument("--server", required=True, metavar="URL", help="the Dockyard server, e.g. http://127.0.0.1:7480")
    a.add_argument("--cluster", default="default",
                   help="cluster to join (default: default, which is created if it does not exist)")
    a.add_argument("--data-dir", help="where the agent keeps its instance ARN and task directories "
                   "(default: ~/.dockyard/agent)")
    a.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                   or "us-east-1", help="region to sign for (default: $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1)")
    a.add_argument("--availability-zone", help="the instance's ecs.availability-zone attribute "
                   "(default: the region + 'a')")
    a.add_argument("--reserved-memory", type=int, default=0, metavar="MIB",
                   help="MiB of the host's memory not offered to tasks (default: 0)")
    a.add_argument("--driver", choices=["docker", "fake"], default="docker",
                   help="container runtime: the local Docker engine, or an in-process fake (default: docker)")
    _add_runtime_args(a, bind_ip="0.0.0.0")
    a.add_argument("--stop-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between a container's stop signal and SIGKILL when a task stops (default: 30)")
    a.add_argument("--credentials-file", help="AWS shared-credentials file holding the agent's key")
    a.add_argument("--profile", help="profile to read from the credentials file (default: $AWS_PROFILE or default)")
    a.set_defaults(fn=cmd_agent)


def parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(prog="dockyard", description="The AWS container platform on your machines.")
    p.add_argument("--version", action="version", version=f"dockyard {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    _add_up_parser(sub)
    s = sub.add_parser("server", help="serve the ECS and ECR APIs (SigV4-verified), the image registry "
                                      "(/v2/) and the agent channel on one HTTP port")
    _add_server_args(s)
    s.set_defaults(fn=cmd_server)

    k = sub.add_parser("keys", help="manage the access keys the server accepts")
    _add_store_args(k)
    ks = k.add_subparsers(dest="keys_cmd", required=True)
    kc = ks.add_parser("create", help="create an access key (same account as the root key)")
    kc.add_argument("--user", default="dockyard-user", help="IAM-style user name the key belongs to")
    kc.add_argument("--account-id", help="12-digit account the key acts in (default: the root key's "
                    "account); resources are separate per account")
    ks.add_parser("list", help="list access keys")
    kd = ks.add_parser("delete", help="delete an access key")
    kd.add_argument("access_key_id")
    k.set_defaults(fn=cmd_keys)

    a = sub.add_parser("advisories", help="manage the offline vulnerability database ECR scans use")
    _add_store_args(a)
    asub = a.add_subparsers(dest="advisories_cmd", required=True)
    al = asub.add_parser("load", help="load or update OSV advisories: a JSON file (one record or an array), "
                         "a directory of them, or a .zip as osv.dev publishes per ecosystem")
    al.add_argument("file")
    a.set_defaults(fn=cmd_advisories)

    _add_agent_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
