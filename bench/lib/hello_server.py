"""Hello world on Dockyard's HTTP stack: granian's embedded RSGI server, one worker, one process.

Started exactly as ``dockyard.api.server.serve`` starts granian (asyncio.run +
``granian.server.embed.Server``, RSGI, logging off); the app reads the body and
answers ``{}``. It is the "HTTP stack only" baseline for the Describe / hello ratio.

    python bench/lib/hello_server.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

_HEADERS = [("content-type", "application/x-amz-json-1.1")]
_BODY = b"{}"


async def app(scope: Any, proto: Any) -> None:
    if scope.proto != "http":
        proto.close(1008)
        return
    await proto()
    proto.response_bytes(200, _HEADERS, _BODY)


async def serve(host: str, port: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False)
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
