"""What every service operation knows about the request that called it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Ctx:
    account_id: str
    region: str
    principal_arn: str
    request_id: str
    now: float  # epoch seconds; one clock reading per request
    access_key_id: str = ""  # the key that signed the request ("" for internal callers)
