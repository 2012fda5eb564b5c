"""PutAccountSetting(Default) / DeleteAccountSetting / ListAccountSettings.

Account settings are account-wide, so this module runs a server of its own
and tests that change the account default put it back.
"""

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from tests.helpers.server import ServerProcess

ALL = ["serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat", "awsvpcTrunking",
       "containerInsights", "fargateFIPSMode", "tagResourceAuthorization", "fargateTaskRetirementWaitPeriod",
       "guardDutyActivate", "defaultLogDriverMode", "fargateEventWindows"]
DEFAULTS = {"serviceLongArnFormat": "enabled", "taskLongArnFormat": "enabled",
            "containerInstanceLongArnFormat": "enabled", "awsvpcTrunking": "disabled",
            "containerInsights": "disabled", "fargateFIPSMode": "disabled", "tagResourceAuthorization": "on",
            "fargateTaskRetirementWaitPeriod": "7", "guardDutyActivate": "off",
            "defaultLogDriverMode": "non-blocking", "fargateEventWindows": "disabled"}


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def acct(srv):
    return srv.client("ecs")


@pytest.fixture(scope="module")
def account_id(acct):
    return acct.list_account_settings()["settings"][0]["principalArn"].split(":")[4]


@pytest.fixture(scope="module")
def root(account_id):
    return f"arn:aws:iam::{account_id}:root"


@pytest.fixture(scope="module")
def alice(srv):
    """A client signing as IAM user alice (not root), with a key made by `dockyard keys create`."""
    out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir", str(srv.data_dir),
                          "create", "--user", "alice"], capture_output=True, text=True, check=True).stdout
    kv = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
    return srv.client("ecs", key=kv["AWS_ACCESS_KEY_ID"], secret=kv["AWS_SECRET_ACCESS_KEY"])


def all_settings(client, **kw):
    out, token = [], None
    while True:
        page = client.list_account_settings(**kw, **({"nextToken": token} if token else {}))
        assert len(page["settings"]) <= kw.get("maxResults", 10)
        out += page["settings"]
        token = page.get("nextToken")
        if not token:
            return out


def code(e):
    return e.value.response["Error"]["Code"]


def test_effective_defaults(acct, root):
    s = all_settings(acct, effectiveSettings=True)
    assert [x["name"] for x in s] == ALL
    assert {x["name"]: x["value"] for x in s} == DEFAULTS
    assert {x["principalArn"] for x in s} == {root}
    assert {x["name"]: x["type"] for x in s}["guardDutyActivate"] == "aws_managed"
    assert {x["name"]: x["type"] for x in s}["containerInsights"] == "user"


def test_without_effective_only_the_long_arn_formats_show_for_root(acct, root):
    s = acct.list_account_settings()["settings"]
    assert [(x["name"], x["value"], x["principalArn"]) for x in s] == [
        ("serviceLongArnFormat", "enabled", root), ("taskLongArnFormat", "enabled", root),
        ("containerInstanceLongArnFormat", "enabled", root)]


def test_paging(acct):
    s = all_settings(acct, effectiveSettings=True, maxResults=3)
    assert [x["name"] for x in s] == ALL
    with pytest.raises(acct.exceptions.InvalidParameterException):
        acct.list_account_settings(maxResults=11)
    with pytest.raises(acct.exceptions.InvalidParameterException):
        acct.list_account_settings(nextToken="bm9wZQ==")


def test_put_for_root_is_the_account_default(acct, root):
    r = acct.put_account_setting(name="containerInsights", value="enhanced")["setting"]
    assert r == {"name": "containerInsights", "value": "enhanced", "principalArn": root, "type": "user"}
    try:
        assert acct.list_account_settings(name="containerInsights")["settings"] == [r]
        assert acct.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"] == [r]
        r2 = acct.put_account_setting_default(name="containerInsights", value="enabled")["setting"]
        assert r2["principalArn"] == root
        assert acct.list_account_settings(name="containerInsights")["settings"][0]["value"] == "enabled"
    finally:
        d = acct.delete_account_setting(name="containerInsights")["setting"]
    assert d["value"] == "enabled"
    assert acct.list_account_settings(name="containerInsights")["settings"] == []
    eff = acct.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"]
    assert eff[0]["value"] == "disabled"


def test_filter_by_value(acct):
    s = all_settings(acct, name="awsvpcTrunking", value="disabled", effectiveSettings=True)
    assert [x["name"] for x in s] == ["awsvpcTrunking"]
    assert all_settings(acct, name="awsvpcTrunking", value="enabled", effectiveSettings=True) == []
    with pytest.raises(acct.exceptions.InvalidParameterException):  # value needs a name
        acct.list_account_settings(value="enabled")


@pytest.mark.parametrize("name,value", [
    ("containerInsights", "on"), ("awsvpcTrunking", "yes"), ("tagResourceAuthorization", "enabled"),
    ("fargateTaskRetirementWaitPeriod", "3"), ("defaultLogDriverMode", "async"), ("fargateFIPSMode", "on"),
    ("guardDutyActivate", "on"),  # managed by AWS (GuardDuty), read-only
])
def test_invalid_values(acct, name, value):
    with pytest.raises(acct.exceptions.InvalidParameterException) as e:
        acct.put_account_setting(name=name, value=value)
    if name != "guardDutyActivate":
        assert e.value.response["Error"]["Message"] == "Invalid setting 'value'"
    with pytest.raises(acct.exceptions.InvalidParameterException):
        acct.put_account_setting_default(name=name, value=value)
    assert acct.list_account_settings(name=name, effectiveSettings=True)["settings"][0]["value"] == DEFAULTS[name]


def test_long_arn_formats_cannot_be_disabled(acct, root):
    for name in ("serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat"):
        with pytest.raises(ClientError) as e:
            acct.put_account_setting_default(name=name, value="disabled")
        assert code(e) == "InvalidParameterException"
        assert "You can no longer disable Long Arn settings" in e.value.response["Error"]["Message"]
        with pytest.raises(acct.exceptions.InvalidParameterException):
            acct.delete_account_setting(name=name)
        assert acct.put_account_setting(name=name, value="enabled")["setting"]["value"] == "enabled"


def test_fargate_retirement_wait_period(acct, account_id):
    for v in ("0", "14", "7"):
        assert acct.put_account_setting(name="fargateTaskRetirementWaitPeriod", value=v)["setting"]["value"] == v
    with pytest.raises(acct.exceptions.InvalidParameterException):  # root only
        acct.put_account_setting(name="fargateTaskRetirementWaitPeriod", value="0",
                                 principalArn=f"arn:aws:iam::{account_id}:user/bob")


def test_setting_for_another_principal(acct, root, account_id):
    bob = f"arn:aws:iam::{account_id}:user/bob"
    r = acct.put_account_setting(name="awsvpcTrunking", value="enabled", principalArn=bob)["setting"]
    assert r["principalArn"] == bob
    assert acct.list_account_settings(principalArn=bob)["settings"] == [r]
    eff = {x["name"]: x for x in all_settings(acct, principalArn=bob, effectiveSettings=True)}
    assert eff["awsvpcTrunking"] == r
    # Inherited values are reported under the principal asked about.
    assert (eff["containerInsights"]["value"], eff["containerInsights"]["principalArn"]) == ("disabled", bob)
    # The account default is untouched.
    assert acct.list_account_settings(name="awsvpcTrunking", effectiveSettings=True)["settings"][0]["value"] \
        == "disabled"
    d = acct.delete_account_setting(name="awsvpcTrunking", principalArn=bob)["setting"]
    assert (d["value"], d["principalArn"]) == ("enabled", bob)
    assert acct.list_account_settings(principalArn=bob)["settings"] == []
    # Naming root explicitly is the same as the account default.
    r = acct.put_account_setting(name="fargateEventWindows", value="enabled", principalArn=root)["setting"]
    assert r["principalArn"] == root
    assert acct.delete_account_setting(name="fargateEventWindows", principalArn=root)["setting"]["value"] == \
        "enabled"


@pytest.mark.parametrize("principal", [
    "arn:aws:iam::000000000000:user/other-account", "arn:aws:sts::123456789012:assumed-role/r/s",
    "not-an-arn", "arn:aws:ecs:us-east-1:123456789012:cluster/x",
])
def test_invalid_principal(acct, principal):
    with pytest.raises(acct.exceptions.InvalidParameterException):
        acct.put_account_setting(name="awsvpcTrunking", value="enabled", principalArn=principal)


def test_non_root_user(acct, alice, account_id):
    me = f"arn:aws:iam::{account_id}:user/alice"
    # Without principalArn a user's setting is its own, and it wins over the account default.
    r = alice.put_account_setting(name="containerInsights", value="enabled")["setting"]
    assert r["principalArn"] == me
    try:
        assert alice.list_account_settings()["settings"] == [r]
        eff = {x["name"]: x for x in all_settings(alice, effectiveSettings=True)}
        assert eff["containerInsights"]["value"] == "enabled"
        # The root user can read it by naming alice.
        assert acct.list_account_settings(principalArn=me)["settings"] == [r]
        # A user may not touch other principals or the account default.
        for call in (lambda: alice.put_account_setting(name="awsvpcTrunking", value="enabled",
                                                       principalArn=f"arn:aws:iam::{account_id}:user/bob"),
                     lambda: alice.put_account_setting_default(name="awsvpcTrunking", value="enabled"),
                     lambda: alice.list_account_settings(principalArn=f"arn:aws:iam::{account_id}:root")):
            with pytest.raises(ClientError) as e:
                call()
            assert code(e) == "AccessDeniedException"
        with pytest.raises(acct.exceptions.InvalidParameterException):  # root only
            alice.put_account_setting(name="fargateTaskRetirementWaitPeriod", value="14")
    finally:
        alice.delete_account_setting(name="containerInsights")
    assert alice.list_account_settings()["settings"] == []
