"""The schemathesis checks every contract test runs against the OpenAPI document."""

from __future__ import annotations

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)
