"""The fast SigV4 verifier accepts exactly what botocore's signer produces."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.api import errors
from dockyard.api.sigv4 import Credential, DictHeaders, SigV4Verifier

KEY = Credential("AKIAEXAMPLEEXAMPLE00", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "123456789012",
                 "arn:aws:iam::123456789012:root")


def lookup(key_id: str) -> Credential | None:
    return KEY if key_id == KEY.access_key_id else None


def signed(body: bytes = b'{"cluster":"default"}', secret: str = KEY.secret_access_key,
           region: str = "us-east-1", service: str = "ecs", url: str = "http://127.0.0.1:7480/",
           extra: dict[str, str] | None = None) -> AWSRequest:
    req = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters", **(extra or {})})
    SigV4Auth(Credentials(KEY.access_key_id, secret), service, region).add_auth(req)
    return req


def verify(req: AWSRequest, service: str = "ecs", clock: float | None = None):
    parts = urlsplit(req.url)
    headers = {k: v for k, v in req.headers.items()}
    headers.setdefault("host", parts.netloc)
    v = SigV4Verifier(lookup, clock=(lambda: clock) if clock else time.time)
    return v.verify(req.method, parts.path or "/", parts.query, DictHeaders(headers),
                    req.body or b"", service)


def test_accepts_botocore_signature_and_reports_identity():
    ident = verify(signed(region="eu-west-3"))
    assert ident.account_id == "123456789012"
    assert ident.region == "eu-west-3"


def test_rejects_wrong_secret():
    with pytest.raises(errors.InvalidSignatureException):
        verify(signed(secret="not-the-secret"))


def test_rejects_tampered_body():
    req = signed()
    req.data = b'{"cluster":"other"}'
    with pytest.raises(errors.InvalidSignatureException):
        verify(req)


def test_unknown_key_is_unrecognized_client():
    req = signed()
    req.headers.replace_header("Authorization",
                               req.headers["Authorization"].replace(KEY.access_key_id, "AKIANOSUCHKEY0000000"))
    with pytest.raises(errors.UnrecognizedClientException):
        verify(req)


def test_missing_authorization():
    req = AWSRequest(method="POST", url="http://127.0.0.1/", data=b"{}", headers={})
    with pytest.raises(errors.MissingAuthenticationTokenException):
        verify(req)


def test_incomplete_authorization_header():
    req = signed()
    req.headers.replace_header("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/ecs/aws4_request")
    with pytest.raises(errors.IncompleteSignatureException):
        verify(req)


def test_clock_skew_window_is_15_minutes():
    req = signed()
    with pytest.raises(errors.InvalidSignatureException, match="Signature expired"):
        verify(req, clock=time.time() + 16 * 60)
    with pytest.raises(errors.InvalidSignatureException, match="not yet current"):
        verify(req, clock=time.time() - 16 * 60)
    assert verify(req, clock=time.time() + 14 * 60).account_id == KEY.account_id


def test_wrong_service_scope_rejected():
    with pytest.raises(errors.InvalidSignatureException, match="correct service"):
        verify(signed(service="ecr"), service="ecs")


def _presign(url: str, expires: int = 300) -> AWSRequest:
    req = AWSRequest(method="GET", url=url, headers={})
    SigV4QueryAuth(Credentials(KEY.access_key_id, KEY.secret_access_key), "ecs", "us-east-1",
                   expires=expires).add_auth(req)
    req.url = req.prepare().url
    return req


def test_presigned_query_string_accepted():
    req = _presign("http://127.0.0.1:7480/ws?clusterArn=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acluster%2Fa&seq=1")
    parts = urlsplit(req.url)
    v = SigV4Verifier(lookup)
    ident = v.verify("GET", parts.path, parts.query, DictHeaders({"host": parts.netloc}), b"", "ecs")
    assert ident.access_key_id == KEY.access_key_id


def test_presigned_expired_rejected():
    req = _presign("http://127.0.0.1:7480/ws?a=b", expires=60)
    parts = urlsplit(req.url)
    v = SigV4Verifier(lookup, clock=lambda: time.time() + 120)
    with pytest.raises(errors.InvalidSignatureException, match="expired"):
        v.verify("GET", parts.path, parts.query, DictHeaders({"host": parts.netloc}), b"", "ecs")


def test_presigned_tampered_query_rejected():
    req = _presign("http://127.0.0.1:7480/ws?a=b")
    parts = urlsplit(req.url)
    with pytest.raises(errors.InvalidSignatureException):
        SigV4Verifier(lookup).verify("GET", parts.path, parts.query.replace("a=b", "a=c"),
                                     DictHeaders({"host": parts.netloc}), b"", "ecs")


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), path=st.lists(st.text("abc-_.~%20/", max_size=6), max_size=3),
       query=st.dictionaries(st.text("abcXYZ-_", min_size=1, max_size=5), _text, max_size=3),
       extra=st.dictionaries(st.sampled_from(["X-Amz-Meta-A", "X-Custom", "Accept"]),
                             st.text("ab c\t-\x0b\xa0", min_size=1, max_size=8), max_size=2),
       region=st.sampled_from(["us-east-1", "eu-central-1", "local"]))
def test_matches_botocore_on_arbitrary_requests(body, path, query, extra, region):
    from urllib.parse import urlencode

    url = "http://127.0.0.1:7480/" + "/".join(path)
    if query:
        url += "?" + urlencode(query)
    req = signed(body=body, url=url, region=region, extra=extra)
    parts = urlsplit(req.url)
    headers = {k: v for k, v in req.headers.items()}
    headers.setdefault("host", parts.netloc)
    v = SigV4Verifier(lookup)
    ident = v.verify("POST", parts.path or "/", parts.query, DictHeaders(headers), body, "ecs")
    assert ident.region == region
    # again through the remembered header and canonical request (the fast path), then tampered
    assert v.verify("POST", parts.path or "/", parts.query, DictHeaders(headers), body, "ecs") == ident
    with pytest.raises(errors.InvalidSignatureException):
        v.verify("POST", parts.path or "/", parts.query, DictHeaders(headers), body + b" ", "ecs")
    with pytest.raises(errors.InvalidSignatureException):
        v.verify("PUT", parts.path or "/", parts.query, DictHeaders(headers), body, "ecs")


def test_a_verifier_that_has_seen_a_header_answers_every_request_as_a_fresh_one_does():
    """After one request passes, its Authorization header (but for the signature) is checked
    once; each later request's own parts are still checked, with the same errors, in the same order."""
    keys = {KEY.access_key_id: KEY}
    now = [time.time()]

    def verifier() -> SigV4Verifier:
        return SigV4Verifier(keys.get, clock=lambda: now[0])

    seen = verifier()

    def answer(v: SigV4Verifier, req: AWSRequest, service: str = "ecs") -> object:
        parts = urlsplit(req.url)
        headers = dict(req.headers.items())
        headers.setdefault("host", parts.netloc)
        try:
            return v.verify(req.method, parts.path or "/", parts.query, DictHeaders(headers), req.body or b"",
                            service)
        except errors.AwsError as err:
            return type(err).__name__, err.message

    first = signed()
    assert answer(seen, first) == answer(verifier(), first)
    tampered = signed()
    tampered.data = b'{"cluster":"other"}'
    wrong_value = signed()
    wrong_value.headers["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.DeleteCluster"
    cases = [(tampered, "ecs"), (wrong_value, "ecs"), (signed(), "ecr"), (signed(secret="other"), "ecs")]
    for req, service in cases:
        got = answer(seen, req, service)
        assert got == answer(verifier(), req, service)
        assert isinstance(got, tuple) and got[0] in ("InvalidSignatureException", "IncompleteSignatureException")
    later = signed()
    now[0] += 16 * 60  # outside the window
    assert answer(seen, later) == answer(verifier(), later)
    assert answer(seen, later)[0] == "InvalidSignatureException"
    now[0] -= 16 * 60
    del keys[KEY.access_key_id]  # the key is deleted
    assert answer(seen, later) == ("UnrecognizedClientException",
                                   "The security token included in the request is invalid.")
    keys[KEY.access_key_id] = KEY
    assert answer(seen, later).account_id == KEY.account_id
