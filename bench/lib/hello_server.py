"""Hello world on Dockyard's HTTP stack: ``dockyard.api.http1.HttpServer`` on uvloop, one process.

Started as ``dockyard.api.server.serve`` starts it; the server reads each request's
body as it reads an AWS call's, and the app answers ``{}`` with the same two
headers an ECS answer carries. It is the "HTTP stack only" baseline for the
Describe / hello ratio.

    python bench/lib/hello_server.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

_HEADERS = [("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")]
_BODY = b"{}"


class HelloApp:
    def respond(self, method: str, path: str, query: str, headers: Any,
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, _HEADERS, _BODY

    def streams(self, path: str) -> bool:
        return False

    async def __call__(self, scope: Any, proto: Any) -> None:
        proto.close(404)


async def serve(host: str, port: int) -> None:
    from dockyard.api.http1 import HttpServer

    server = HttpServer(HelloApp(), host, port)
    await server.start()
    print(f"hello serving on http://{host}:{port}", flush=True)
    await server.serve()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop",
                   help="event loop (default uvloop, as Dockyard's server runs: the same stack)")
    p.add_argument("--body-bytes", type=int, default=0,
                   help="answer a JSON body of this size instead of {} (a control for response size)")
    a = p.parse_args()
    if a.body_bytes > 8:
        global _BODY
        _BODY = b'{"x":"' + b"a" * (a.body_bytes - 8) + b'"}'
    try:
        if a.loop == "uvloop":
            import uvloop

            uvloop.run(serve(a.host, a.port))
        else:
            asyncio.run(serve(a.host, a.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
