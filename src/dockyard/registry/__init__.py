"""The image registry: OCI Distribution storage and manifests, behind the ECR API."""
