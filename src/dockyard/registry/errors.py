"""The OCI Distribution error codes, and the status each is answered with."""

from __future__ import annotations

from typing import Any

import orjson

STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,  # as distribution answers a manifest PUT
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "TAG_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOO_MANY_REQUESTS": 429,
    "RANGE_INVALID": 416,
    "UNKNOWN": 500,
}


class RegistryError(Exception):
    """Answered as ``{"errors": [{"code", "message", "detail"}]}`` with the code's status."""

    def __init__(self, code: str, message: str, status: int | None = None, detail: Any = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)
        self.detail = detail
        self.headers = headers or []

    def body(self) -> bytes:
        return orjson.dumps({"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]})
