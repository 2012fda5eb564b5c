"""AWS-shaped errors: every failure a client can see is one of these.

The JSON protocols put the code in ``__type`` and the text in ``message``;
botocore maps ``__type`` to the modeled exception class, so the code names
must be exactly AWS's.
"""

from __future__ import annotations


class AwsError(Exception):
    """An error answered to the client as ``{"__type": code, "message": ...}``."""

    code: str = "ServerException"
    status: int = 400

    def __init__(self, message: str = "", code: str | None = None, status: int | None = None,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        # Extra members of the exception shape (ConflictException.resourceIds).
        self.extra = extra or {}


def _kind(code: str, status: int = 400) -> type[AwsError]:
    return type(code, (AwsError,), {"code": code, "status": status})


# ECS modeled exceptions (botocore's ECS model lists them).
ClientException = _kind("ClientException")
InvalidParameterException = _kind("InvalidParameterException")
ClusterNotFoundException = _kind("ClusterNotFoundException")
ServiceNotFoundException = _kind("ServiceNotFoundException")
ServiceNotActiveException = _kind("ServiceNotActiveException")
ClusterContainsServicesException = _kind("ClusterContainsServicesException")
ClusterContainsTasksException = _kind("ClusterContainsTasksException")
ClusterContainsContainerInstancesException = _kind("ClusterContainsContainerInstancesException")
ClusterContainsCapacityProviderException = _kind("ClusterContainsCapacityProviderException")
LimitExceededException = _kind("LimitExceededException")
AttributeLimitExceededException = _kind("AttributeLimitExceededException")
TargetNotFoundException = _kind("TargetNotFoundException")
ResourceNotFoundException = _kind("ResourceNotFoundException")
ResourceInUseException = _kind("ResourceInUseException")
ConflictException = _kind("ConflictException")
UpdateInProgressException = _kind("UpdateInProgressException")
PlatformUnknownException = _kind("PlatformUnknownException")
PlatformTaskDefinitionIncompatibilityException = _kind("PlatformTaskDefinitionIncompatibilityException")
UnsupportedFeatureException = _kind("UnsupportedFeatureException")
NamespaceNotFoundException = _kind("NamespaceNotFoundException")
AccessDeniedException = _kind("AccessDeniedException")
ServerException = _kind("ServerException", 500)

# Protocol-level errors shared by every AWS JSON service.
UnknownOperationException = _kind("UnknownOperationException")
SerializationException = _kind("SerializationException")
ValidationException = _kind("ValidationException")
ThrottlingException = _kind("ThrottlingException")

# SigV4 (the codes AWS answers for authentication failures).
MissingAuthenticationTokenException = _kind("MissingAuthenticationTokenException", 403)
IncompleteSignatureException = _kind("IncompleteSignatureException", 400)
InvalidSignatureException = _kind("InvalidSignatureException", 403)
UnrecognizedClientException = _kind("UnrecognizedClientException", 400)
