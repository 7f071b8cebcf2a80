"""Fixtures the storage-quota tests share with other packages: the quota tests'
administrator (``admin``) and the scale-out tests' S3 server (``s3``)."""

from tests.api.test_quotas_api import admin
from tests.scaleout.conftest import s3

__all__ = ["admin", "s3"]
