"""Archive tests run against a real S3-compatible server (see :mod:`tests.support.archive`)."""

from tests.support.archive import moto  # noqa: F401 -- fixture
