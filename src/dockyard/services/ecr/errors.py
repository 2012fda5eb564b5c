"""ECR's modeled exceptions (botocore's ECR model names them) and the sentences ECR answers.

``InvalidParameterException``, ``LimitExceededException`` and ``ValidationException`` share
their code with ECS's and are imported from ``api.errors``.
"""

from __future__ import annotations

from dockyard.api.errors import AwsError, InvalidParameterException, LimitExceededException, ValidationException

__all__ = [
    "EmptyUploadException",
    "ImageAlreadyExistsException",
    "ImageDigestDoesNotMatchException",
    "ImageNotFoundException",
    "ImageTagAlreadyExistsException",
    "InvalidLayerException",
    "InvalidLayerPartException",
    "InvalidParameterException",
    "InvalidTagParameterException",
    "LayerAlreadyExistsException",
    "LayerInaccessibleException",
    "LayerPartTooSmallException",
    "LayersNotFoundException",
    "LifecyclePolicyNotFoundException",
    "LimitExceededException",
    "ReferencedImagesNotFoundException",
    "RepositoryAlreadyExistsException",
    "RepositoryNotEmptyException",
    "RepositoryNotFoundException",
    "RepositoryPolicyNotFoundException",
    "TooManyTagsException",
    "UploadNotFoundException",
    "ValidationException",
    "repository_not_found",
]


class RepositoryNotFoundException(AwsError):
    code = "RepositoryNotFoundException"


class RepositoryAlreadyExistsException(AwsError):
    code = "RepositoryAlreadyExistsException"


class RepositoryNotEmptyException(AwsError):
    code = "RepositoryNotEmptyException"


class RepositoryPolicyNotFoundException(AwsError):
    code = "RepositoryPolicyNotFoundException"


class LifecyclePolicyNotFoundException(AwsError):
    code = "LifecyclePolicyNotFoundException"


class ImageNotFoundException(AwsError):
    code = "ImageNotFoundException"


class ImageAlreadyExistsException(AwsError):
    code = "ImageAlreadyExistsException"


class ImageTagAlreadyExistsException(AwsError):
    code = "ImageTagAlreadyExistsException"


class ImageDigestDoesNotMatchException(AwsError):
    code = "ImageDigestDoesNotMatchException"


class ReferencedImagesNotFoundException(AwsError):
    code = "ReferencedImagesNotFoundException"


class LayersNotFoundException(AwsError):
    code = "LayersNotFoundException"


class LayerInaccessibleException(AwsError):
    code = "LayerInaccessibleException"


class LayerAlreadyExistsException(AwsError):
    code = "LayerAlreadyExistsException"


class InvalidLayerException(AwsError):
    code = "InvalidLayerException"


class LayerPartTooSmallException(AwsError):
    code = "LayerPartTooSmallException"


class EmptyUploadException(AwsError):
    code = "EmptyUploadException"


class UploadNotFoundException(AwsError):
    code = "UploadNotFoundException"


class InvalidLayerPartException(AwsError):
    code = "InvalidLayerPartException"


class InvalidTagParameterException(AwsError):
    code = "InvalidTagParameterException"


class TooManyTagsException(AwsError):
    code = "TooManyTagsException"


def repository_not_found(name: str, registry_id: str) -> RepositoryNotFoundException:
    return RepositoryNotFoundException(
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'")
