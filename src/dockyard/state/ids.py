"""Identifiers in the formats AWS uses."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import string
import time

_ALNUM_UPPER = string.ascii_uppercase + string.digits
_B64ISH = string.ascii_letters + string.digits + "+/"


_last_us = 0
# Resource IDs must be unique, not secret: one generator seeded from the OS, rather than a
# getrandom() syscall for each ID (RunTask makes one per task and one per container).
_RNG = random.Random(os.urandom(32))


def hex32() -> str:
    """Task and container-instance IDs: 32 lower-case hex characters (long ARN format).

    Time-ordered: 13 hex digits of microseconds since the epoch (strictly increasing in this
    process), then 19 random ones. The task indexes all end in the ARN, so a new task lands at the
    end of its range in each of them instead of on a random page: a group of RunTasks dirties a
    few pages per index rather than one per task per index (commit CPU per RunTask 120-140 ->
    ~60 us in bench/api_mix.py's workload).
    """
    global _last_us
    n = time.time_ns() // 1000
    if n <= _last_us:
        n = _last_us + 1
    _last_us = n
    return f"{n:013x}{_RNG.getrandbits(76):019x}"


def uuid() -> str:
    h = f"{_RNG.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def deployment_id() -> str:
    """``ecs-svc/`` and 19 decimal digits."""
    return "ecs-svc/" + str(_RNG.randrange(10**18, 10**19))


_URL_SAFE = (string.ascii_letters + string.digits + "-_").encode()
_URL_SAFE_TABLE = bytes(_URL_SAFE[b % 64] for b in range(256))  # 256 = 4 * 64: uniform


def url_safe(n: int) -> str:
    """``n`` random characters of ``A-Za-z0-9-_`` (service deployment IDs)."""
    return _RNG.randbytes(n).translate(_URL_SAFE_TABLE).decode()


def access_key_id() -> str:
    # AKIA + 16 upper-case alphanumerics, as IAM user keys look.
    return "AKIA" + "".join(secrets.choice(_ALNUM_UPPER) for _ in range(16))


def secret_access_key() -> str:
    return "".join(secrets.choice(_B64ISH) for _ in range(40))


def account_id() -> str:
    return str(secrets.randbelow(9 * 10**11) + 10**11)


class RequestIds:
    """x-amzn-RequestId values: a random per-process prefix and a counter.

    A uuid4 per request costs a getrandom() syscall, measurable at these rates.
    """

    def __init__(self) -> None:
        p = os.urandom(10).hex()
        self._prefix = f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-"
        self._n = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._n):012x}"
