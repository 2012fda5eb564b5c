"""Repository policies deciding push and pull: ``access.allowed`` / ``access.decide``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.services.ecr import access

OWNER = "111122223333"
OTHER = "222233334444"
ROOT = f"arn:aws:iam::{OWNER}:root"
ALICE = f"arn:aws:iam::{OWNER}:user/alice"
BOB = f"arn:aws:iam::{OTHER}:user/bob"
OTHER_ROOT = f"arn:aws:iam::{OTHER}:root"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def st(effect: str, principal: Any, action: Any, **extra: Any) -> dict[str, Any]:
    return {"Sid": "s", "Effect": effect, "Principal": principal, "Action": action, **extra}


def bob_may(text: str | bytes | None, action: str = "ecr:BatchGetImage") -> bool:
    return access.allowed(text, BOB, OTHER, OWNER, action)


def test_no_policy_same_account_allowed_other_account_not() -> None:
    for text in (None, "", b""):
        assert access.allowed(text, ALICE, OWNER, OWNER, "ecr:PutImage")
        assert access.allowed(text, ROOT, OWNER, OWNER, "ecr:BatchGetImage")
        assert not bob_may(text)
        assert access.decide(text, BOB, OTHER, OWNER, "ecr:BatchGetImage") == access.IMPLICIT


@pytest.mark.parametrize("principal", [
    "*", {"AWS": "*"}, {"AWS": OTHER}, {"AWS": OTHER_ROOT}, {"AWS": BOB},
    {"AWS": [f"arn:aws:iam::{OWNER}:root", BOB]}, {"AWS": ["999988887777", OTHER]}, {"AWS": ["*"]},
])
def test_principal_forms_that_match(principal: Any) -> None:
    assert bob_may(policy(st("Allow", principal, "ecr:BatchGetImage")))


@pytest.mark.parametrize("principal", [
    {"AWS": "999988887777"}, {"AWS": "arn:aws:iam::999988887777:root"}, {"AWS": f"arn:aws:iam::{OTHER}:user/carol"},
    {"AWS": [ROOT, ALICE]}, {"Service": "ecs.amazonaws.com"}, {"AWS": []},
])
def test_principal_forms_that_do_not_match(principal: Any) -> None:
    assert not bob_may(policy(st("Allow", principal, "ecr:BatchGetImage")))


@pytest.mark.parametrize("action,ok", [
    ("ecr:*", True), ("*", True), ("ecr:BatchGetImage", True), ("ECR:batchgetimage", True),
    ("ecr:Batch*", True), ("ecr:*Image*", True), ("ecr:BatchGet?mage", True),
    (["ecr:PutImage", "ecr:BatchGetImage"], True),
    ("ecr:BatchGetImages", False), ("ecr:Put*", False), ("ecr:GetDownloadUrlForLayer", False),
    ("s3:*", False), ("ecr:BatchGetImage[", False), ([], False),
])
def test_action_matching(action: Any, ok: bool) -> None:
    assert bob_may(policy(st("Allow", {"AWS": OTHER}, action))) is ok


def test_allow_is_per_action() -> None:
    text = policy(st("Allow", {"AWS": OTHER}, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]))
    assert bob_may(text, "ecr:BatchGetImage")
    assert bob_may(text, "ecr:GetDownloadUrlForLayer")
    assert not bob_may(text, "ecr:PutImage")


def test_explicit_deny_wins_everywhere() -> None:
    text = policy(st("Allow", "*", "ecr:*"), st("Deny", {"AWS": ALICE}, "ecr:PutImage"))
    assert not access.allowed(text, ALICE, OWNER, OWNER, "ecr:PutImage")
    assert access.decide(text, ALICE, OWNER, OWNER, "ecr:PutImage") == access.DENY
    assert access.allowed(text, ALICE, OWNER, OWNER, "ecr:BatchGetImage")
    assert access.allowed(text, ROOT, OWNER, OWNER, "ecr:PutImage")  # the deny names alice only
    assert bob_may(text, "ecr:PutImage")
    # Denying the account's root principal denies every principal of the account.
    text = policy(st("Deny", {"AWS": ROOT}, "ecr:Put*"))
    assert not access.allowed(text, ALICE, OWNER, OWNER, "ecr:PutImage")
    assert not access.allowed(text, ROOT, OWNER, OWNER, "ecr:PutImage")
    assert access.allowed(text, ROOT, OWNER, OWNER, "ecr:BatchGetImage")
    text = policy(st("Allow", {"AWS": OTHER}, "ecr:*"), st("Deny", "*", "ecr:BatchGetImage"))
    assert not bob_may(text)
    assert bob_may(text, "ecr:ListImages")


def test_conditions_are_not_evaluated() -> None:
    cond = {"StringEquals": {"aws:SourceVpc": "vpc-1"}}
    assert not bob_may(policy(st("Allow", {"AWS": OTHER}, "ecr:*", Condition=cond)))
    assert access.allowed(policy(st("Deny", "*", "ecr:*", Condition=cond)), ALICE, OWNER, OWNER, "ecr:PutImage")
    # An empty Condition is no condition.
    assert bob_may(policy(st("Allow", {"AWS": OTHER}, "ecr:*", Condition={})))


def test_not_principal_and_not_action_are_conservative() -> None:
    # An Allow with NotPrincipal / NotAction grants nothing.
    assert not bob_may(policy({"Effect": "Allow", "NotPrincipal": {"AWS": "999988887777"}, "Action": "ecr:*"}))
    assert not bob_may(policy({"Effect": "Allow", "Principal": "*", "NotAction": "ecr:PutImage"}))
    # A Deny with them denies what is not listed.
    deny_others = policy({"Effect": "Deny", "NotPrincipal": {"AWS": ROOT}, "Action": "ecr:PutImage"})
    assert not access.allowed(deny_others, BOB, OTHER, OWNER, "ecr:PutImage")
    assert access.allowed(deny_others, ALICE, OWNER, OWNER, "ecr:PutImage")
    deny_but_pull = policy({"Effect": "Deny", "Principal": {"AWS": ALICE}, "NotAction": "ecr:BatchGetImage"})
    assert not access.allowed(deny_but_pull, ALICE, OWNER, OWNER, "ecr:PutImage")
    assert access.allowed(deny_but_pull, ALICE, OWNER, OWNER, "ecr:BatchGetImage")


def test_single_statement_object_bytes_and_bad_text() -> None:
    one = json.dumps({"Statement": st("Allow", {"AWS": OTHER}, "ecr:BatchGetImage")})
    assert bob_may(one) and bob_may(one.encode())
    assert not bob_may("not json")
    assert access.allowed("not json", ALICE, OWNER, OWNER, "ecr:PutImage")
    assert not bob_may(policy({"Effect": "Maybe", "Principal": "*", "Action": "*"}))


def test_policies_are_parsed_once() -> None:
    text = policy(st("Allow", {"AWS": OTHER}, "ecr:BatchGetImage"))
    assert bob_may(text)
    parsed = access._CACHE[text.encode()]
    assert bob_may(text.encode())
    assert access._CACHE[text.encode()] is parsed


def test_denied_message() -> None:
    arn = f"arn:aws:ecr:us-east-1:{OWNER}:repository/app"
    assert access.denied_message(BOB, "ecr:BatchGetImage", arn, explicit=False) == (
        f"User: {BOB} is not authorized to perform: ecr:BatchGetImage on resource: {arn} "
        "because no resource-based policy allows the ecr:BatchGetImage action")
    assert access.denied_message(ALICE, "ecr:PutImage", arn, explicit=True).endswith(
        "with an explicit deny in a resource-based policy")
    assert access.repo_account(arn) == OWNER
