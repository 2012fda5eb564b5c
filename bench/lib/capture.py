"""Requests exactly as botocore sends them, captured without sending, and re-signed fast.

A ``before-send`` handler records the prepared request and answers a dummy
``{}`` so nothing goes on the wire. Each captured request is a *template*: its
headers are the ones botocore put on it (User-Agent, amz-sdk-*, ...), plus the
``Host`` and ``Accept-Encoding: identity`` that http.client adds on the wire.

Distinct bodies (CreateService needs a new service name per request) are made
by substituting a placeholder in the template's body and re-signing with
``Signer``, a plain SigV4 signer for these POST requests (about 10 µs against
~300 µs for a full botocore call). ``Signer`` is checked against botocore on
every template: it must reproduce botocore's signature byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = "zzNAMEzz"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


@dataclass
class Template:
    op: str
    host: str
    headers: list[tuple[str, str]]  # wire order, without Content-Length
    body: bytes
    signed_headers: str
    credential_scope: str  # date/region/service/aws4_request
    access_key: str


class Capturer:
    """A botocore client whose calls are recorded instead of sent."""

    def __init__(self, endpoint: str, key: str, secret: str, region: str = "us-east-1",
                 service: str = "ecs") -> None:
        import boto3
        from botocore.awsrequest import AWSResponse
        from botocore.config import Config

        self._AWSResponse = AWSResponse
        self.endpoint = endpoint
        self.host = endpoint.split("://", 1)[1].rstrip("/")
        self.key, self.secret, self.region, self.service = key, secret, region, service
        self.client = boto3.client(service, endpoint_url=endpoint, region_name=region,
                                   aws_access_key_id=key, aws_secret_access_key=secret,
                                   config=Config(retries={"max_attempts": 0}))
        self._last: Any = None
        self.client.meta.events.register(f"before-send.{service}", self._hook)
        self.signer = Signer(key, secret, region, service)

    def _hook(self, request: Any, **_: Any) -> Any:
        self._last = request
        return self._AWSResponse(request.url, 200, {}, _Raw(b"{}"))

    def capture(self, op: str, method: str, params: dict[str, Any]) -> Template:
        """Call ``client.<method>(**params)`` without sending; the signed request as a template."""
        self._last = None
        getattr(self.client, method)(**params)
        req = self._last
        assert req is not None, f"{op}: botocore sent nothing"
        hdrs: list[tuple[str, str]] = [("Host", self.host), ("Accept-Encoding", "identity")]
        for k, v in req.headers.items():
            if k.lower() == "content-length":
                continue
            hdrs.append((k, v.decode() if isinstance(v, bytes) else str(v)))
        body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
        auth = dict(hdrs)["Authorization"]
        fields = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
        key, scope = fields["Credential"].split("/", 1)
        tpl = Template(op, self.host, hdrs, body, fields["SignedHeaders"], scope, key)
        # Our signer must agree with botocore's on exactly this request.
        amz = dict(hdrs)["X-Amz-Date"]
        mine = self.signer.authorization(tpl, body, amz)
        if mine != auth:
            raise AssertionError(f"{op}: bench signer disagrees with botocore\n {mine}\n {auth}")
        return tpl


class Signer:
    """SigV4 for a POST to ``/`` with no query string (the AWS JSON protocol)."""

    def __init__(self, key: str, secret: str, region: str, service: str) -> None:
        self.key, self.secret, self.region, self.service = key, secret, region, service
        self._kcache: dict[str, bytes] = {}

    def _signing_key(self, date: str) -> bytes:
        k = self._kcache.get(date)
        if k is None:
            k = hmac.new(("AWS4" + self.secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._kcache[date] = k
        return k

    def authorization(self, tpl: Template, body: bytes, amz_date: str) -> str:
        names = tpl.signed_headers.split(";")
        lower = {k.lower(): v for k, v in tpl.headers}
        lower["x-amz-date"] = amz_date
        canon = "".join(f"{n}:{' '.join(lower[n].split())}\n" for n in names)
        creq = f"POST\n/\n\n{canon}\n{tpl.signed_headers}\n{hashlib.sha256(body).hexdigest()}"
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
        sig = hmac.new(self._signing_key(date), sts.encode(), hashlib.sha256).hexdigest()
        return (f"AWS4-HMAC-SHA256 Credential={self.key}/{scope}, SignedHeaders={tpl.signed_headers}, "
                f"Signature={sig}")

    def raw(self, tpl: Template, body: bytes | None = None, amz_date: str | None = None) -> bytes:
        """The whole HTTP/1.1 request, signed now (or at ``amz_date``), ready for the wire."""
        if body is None:
            body = tpl.body
        if amz_date is None:
            amz_date = now_amz_date()
        auth = self.authorization(tpl, body, amz_date)
        lines = ["POST / HTTP/1.1"]
        for k, v in tpl.headers:
            kl = k.lower()
            if kl == "x-amz-date":
                v = amz_date
            elif kl == "authorization":
                v = auth
            lines.append(f"{k}: {v}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def now_amz_date() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
