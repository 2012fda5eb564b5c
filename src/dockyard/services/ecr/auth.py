"""GetAuthorizationToken, and the check the registry's /v2/ routes make of the password it issues.

The token is base64("AWS:" + password), as ECR's. The password is self-contained, so nothing is
stored per token:

    "dy1." + b64url(JSON {"k": key id, "a": account, "r": region, "e": expiry}) + "." + b64url(mac)

with mac = HMAC-SHA256(key=HMAC-SHA256(that key's secret, "dockyard-ecr-token-v1"), payload).
Keying it by the issuing access key's secret means a deleted or deactivated key's tokens stop
working at once, and no server secret has to be created, stored or rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import orjson
from sqlalchemy import bindparam, select

from dockyard.services.context import Ctx
from dockyard.services.ecr import config
from dockyard.services.ecr.common import Doc
from dockyard.services.ecr.errors import InvalidParameterException
from dockyard.services.ecr.registry import ecr
from dockyard.state import keys
from dockyard.state.schema import access_keys as kt
from dockyard.state.store import Tx, prepare

DEFAULT_REGION = "us-east-1"  # passwords issued before the region claim existed
TOKEN_TTL = 12 * 3600  # ECR's tokens are valid for 12 hours
_PREFIX = "dy1."
_PURPOSE = b"dockyard-ecr-token-v1"

# The principal's oldest active key, for a Ctx that does not say which key signed the request.
_KEY_OF_PRINCIPAL = prepare(
    select(kt.c.access_key_id, kt.c.secret_access_key)
    .where(kt.c.principal_arn == bindparam("p"), kt.c.account_id == bindparam("acct"), kt.c.status == "Active")
    .order_by(kt.c.created_at, kt.c.access_key_id).limit(1))


@dataclass(frozen=True, slots=True)
class RegistryIdentity:
    """Who a valid registry password belongs to."""

    account_id: str
    principal_arn: str
    access_key_id: str
    expires_at: float
    region: str = DEFAULT_REGION  # where GetAuthorizationToken was called: repositories are per region


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes) -> bytes:
    key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, payload, hashlib.sha256).digest()


def make_password(access_key_id: str, secret: str, account_id: str, expires_at: float,
                  region: str = DEFAULT_REGION) -> str:
    payload = orjson.dumps({"k": access_key_id, "a": account_id, "r": region, "e": int(expires_at)})
    return _PREFIX + _b64(payload) + "." + _b64(_mac(secret, payload))


def verify_password(tx: Tx, password: str, now: float) -> RegistryIdentity | None:
    """The identity a registry password (from GetAuthorizationToken) stands for, or None when it is
    malformed, forged, expired, or its access key no longer exists / is inactive."""
    if not password.startswith(_PREFIX) or len(password) > 2048:
        return None
    body, sep, mac_text = password[len(_PREFIX):].partition(".")
    if not sep:
        return None
    try:
        payload = _unb64(body)
        mac = _unb64(mac_text)
        claims = orjson.loads(payload)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    key_id, account, expires = claims.get("k"), claims.get("a"), claims.get("e")
    if not isinstance(key_id, str) or not isinstance(account, str) or not isinstance(expires, int):
        return None
    if expires <= now:
        return None
    cred = keys.lookup(tx, key_id)
    if cred is None or cred.account_id != account:
        return None
    if not hmac.compare_digest(mac, _mac(cred.secret_access_key, payload)):
        return None
    region = claims.get("r")
    return RegistryIdentity(account, cred.principal_arn, key_id, float(expires),
                            region if isinstance(region, str) and region else DEFAULT_REGION)


def authorization_token(password: str) -> str:
    return base64.b64encode(b"AWS:" + password.encode()).decode()


@ecr.op("GetAuthorizationToken", write=False)
def get_authorization_token(tx: Tx, ctx: Ctx, req: Doc) -> Doc:
    key_id: str | None = ctx.access_key_id
    secret = None
    if key_id:
        cred = keys.lookup(tx, key_id)
        secret = cred.secret_access_key if cred else None
    if secret is None:
        row = tx.one(_KEY_OF_PRINCIPAL, p=ctx.principal_arn, acct=ctx.account_id)
        if row is None:  # the key that signed this request was deleted meanwhile
            raise InvalidParameterException("No active access key for the caller.")
        key_id, secret = row
    expires = int(ctx.now) + TOKEN_TTL
    token = authorization_token(make_password(str(key_id), str(secret), ctx.account_id, expires, ctx.region))
    endpoint = "http://" + config.registry_host()
    # registryIds is deprecated in ECR: one entry per id asked for, all valid for this registry.
    ids = req.get("registryIds") or [ctx.account_id]
    return {"authorizationData": [{"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": endpoint}
                                  for _ in ids]}
