"""ECR basic scanning: an inventory of an image's packages matched against OSV advisories.

``inventory`` reads the layers (streaming tar, whiteouts applied) for OS and Python packages,
``versions`` orders versions as dpkg, apk and PEP 440 do, ``advisories`` loads OSV JSON into the
store, ``matcher`` decides which advisories affect which packages and how severe they are.
"""
