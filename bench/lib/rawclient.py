"""A lean ECS JSON client for load generators: botocore's SigV4 signer, one kept-alive connection, orjson.

boto3 parses every response into Python objects through the model; at a hundred RunTask
calls a second (ten tasks each) that parsing alone took a core of this 2-core machine from
the system under test. Requests here are the same bytes on the wire, signed by botocore.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"


class RawEcs:
    def __init__(self, endpoint: str, key: str, secret: str, region: str = "us-east-1") -> None:
        u = urlsplit(endpoint)
        self.endpoint = endpoint
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.signer = SigV4Auth(Credentials(key, secret), "ecs", region)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(params)
        req = AWSRequest("POST", self.endpoint + "/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.1",
                                  "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"})
        self.signer.add_auth(req)
        self.conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        resp = self.conn.getresponse()
        data = resp.read()
        out = orjson.loads(data) if data else {}
        if resp.status >= 300:
            raise RuntimeError(f"{operation}: HTTP {resp.status}: {out}")
        return out  # type: ignore[no-any-return]

    def run_task(self, **params: Any) -> dict[str, Any]:
        return self.call("RunTask", params)
