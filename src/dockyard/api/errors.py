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


# ECS modeled exceptions (botocore's ECS model lists them).


class ClientException(AwsError):
    code = "ClientException"


class InvalidParameterException(AwsError):
    code = "InvalidParameterException"


class ClusterNotFoundException(AwsError):
    code = "ClusterNotFoundException"


class ServiceNotFoundException(AwsError):
    code = "ServiceNotFoundException"


class ServiceNotActiveException(AwsError):
    code = "ServiceNotActiveException"


class ClusterContainsServicesException(AwsError):
    code = "ClusterContainsServicesException"


class ClusterContainsTasksException(AwsError):
    code = "ClusterContainsTasksException"


class ClusterContainsContainerInstancesException(AwsError):
    code = "ClusterContainsContainerInstancesException"


class ClusterContainsCapacityProviderException(AwsError):
    code = "ClusterContainsCapacityProviderException"


class LimitExceededException(AwsError):
    code = "LimitExceededException"


class AttributeLimitExceededException(AwsError):
    code = "AttributeLimitExceededException"


class TargetNotFoundException(AwsError):
    code = "TargetNotFoundException"


class ResourceNotFoundException(AwsError):
    code = "ResourceNotFoundException"


class ResourceInUseException(AwsError):
    code = "ResourceInUseException"


class ConflictException(AwsError):
    code = "ConflictException"


class UpdateInProgressException(AwsError):
    code = "UpdateInProgressException"


class PlatformUnknownException(AwsError):
    code = "PlatformUnknownException"


class PlatformTaskDefinitionIncompatibilityException(AwsError):
    code = "PlatformTaskDefinitionIncompatibilityException"


class UnsupportedFeatureException(AwsError):
    code = "UnsupportedFeatureException"


class NamespaceNotFoundException(AwsError):
    code = "NamespaceNotFoundException"


class AccessDeniedException(AwsError):
    code = "AccessDeniedException"


class ServerException(AwsError):
    code = "ServerException"
    status = 500

# Protocol-level errors shared by every AWS JSON service.


class UnknownOperationException(AwsError):
    code = "UnknownOperationException"


class SerializationException(AwsError):
    code = "SerializationException"


class ValidationException(AwsError):
    code = "ValidationException"


class ThrottlingException(AwsError):
    code = "ThrottlingException"

# SigV4 (the codes AWS answers for authentication failures).


class MissingAuthenticationTokenException(AwsError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignatureException(AwsError):
    code = "IncompleteSignatureException"
    status = 400


class InvalidSignatureException(AwsError):
    code = "InvalidSignatureException"
    status = 403


class UnrecognizedClientException(AwsError):
    code = "UnrecognizedClientException"
    status = 400
