"""Enum, max and timestamp constraints that ParamValidator leaves to the server."""

import botocore.session
import pytest

from dockyard.api.constraints import compile_constraints
from dockyard.api.errors import InvalidParameterException

MODEL = botocore.session.get_session().get_service_model("ecs")
C = compile_constraints(MODEL)


def test_bad_enum_is_rejected_with_the_allowed_values():
    with pytest.raises(InvalidParameterException, match=r"at 'launchType'.*enum value set: \[EC2"):
        C["RunTask"]({"taskDefinition": "x", "launchType": "MOON"})


def test_nested_enum_in_list_is_checked_with_its_path():
    with pytest.raises(InvalidParameterException, match="containerDefinitions.1.member.portMappings"):
        C["RegisterTaskDefinition"]({"family": "f", "containerDefinitions": [
            {"name": "a", "image": "i", "portMappings": [{"containerPort": 80, "protocol": "sctp"}]}]})


def test_valid_input_passes_unchanged():
    req = {"taskDefinition": "x", "launchType": "EC2", "count": 1}
    C["RunTask"](req)
    assert req == {"taskDefinition": "x", "launchType": "EC2", "count": 1}


def test_timestamp_strings_become_epoch_seconds():
    req = {"service": "s", "createdAt": {"before": "2024-01-02T03:04:05Z", "after": 1700000000}}
    C["ListServiceDeployments"](req)
    assert req["createdAt"] == {"before": 1704164645.0, "after": 1700000000.0}


@pytest.mark.parametrize("bad", [1e20, "not a date", True])
def test_unusable_timestamps_are_rejected(bad):
    with pytest.raises(InvalidParameterException):
        C["ListServiceDeployments"]({"service": "s", "createdAt": {"before": bad}})


def test_operations_without_constraints_have_no_walker():
    assert "DeleteCluster" not in C
