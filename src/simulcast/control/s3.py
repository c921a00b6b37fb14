"""A thin, blocking adapter over boto3 for S3-compatible storage (run it in a thread).

Every method makes at most one request and raises :class:`S3Error` with a short, secret-free
description; callers run them with ``asyncio.to_thread`` so the event loop never waits on the
network. Clients are cached per endpoint and credentials (boto3 clients are thread-safe).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# boto3 and botocore are imported on first use, not at server start: they hold ~13 MB resident
# that a server without cloud-archive destinations never needs.


def _boto_errors() -> tuple[type[Exception], ...]:
    """The exceptions a boto3 call raises (imported by the call that can raise them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


class S3Error(Exception):
    """A request failed; ``code`` is S3's error code when it answered (e.g. ``NoSuchUpload``)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where and as whom to upload. ``secret_access_key`` is excluded from ``repr``."""

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def key_for(self, file_name: str) -> str:
        """The object key of a recording."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/{file_name}" if prefix else file_name


@dataclass(frozen=True, slots=True)
class Part:
    """An uploaded part: number, size and ETag."""

    number: int
    size: int
    etag: str


def _describe(exc: Exception) -> S3Error:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        return S3Error(f"S3 {exc.operation_name}: {code}: {message}", code)
    return S3Error(f"S3 unreachable: {type(exc).__name__}: {exc}")


class S3Store:
    """Blocking S3 operations with a client per (endpoint, region, credentials)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, target: S3Target) -> Any:
        key = (
            target.endpoint_url,
            target.region,
            target.access_key_id,
            target.secret_access_key,
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=target.endpoint_url or None,
                    region_name=target.region or None,
                    aws_access_key_id=target.access_key_id or None,
                    aws_secret_access_key=target.secret_access_key or None,
                    config=Config(
                        connect_timeout=5,
                        read_timeout=30,
                        retries={"max_attempts": 1},  # the archive service retries itself
                        signature_version="s3v4",
                        s3={"addressing_style": "path"},
                    ),
                )
                self._clients[key] = client
            return client

    def _call(self, target: S3Target, operation: str, key: str, **kwargs: Any) -> Any:
        """``operation`` on object ``key`` of the target's bucket."""
        try:
            client = self._client(target)
            return getattr(client, operation)(Bucket=target.bucket, Key=key, **kwargs)
        except _boto_errors() as exc:
            raise _describe(exc) from None

    def create_upload(self, target: S3Target, key: str) -> str:
        """Start a multipart upload; its id."""
        answer = self._call(target, "create_multipart_upload", key, ContentType="video/mp4")
        return str(answer["UploadId"])

    def list_parts(self, target: S3Target, key: str, upload_id: str) -> dict[int, Part]:
        """The parts an upload holds (every page)."""
        parts: dict[int, Part] = {}
        marker = 0
        while True:
            answer = self._call(
                target,
                "list_parts",
                key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            for item in answer.get("Parts", []):
                number = int(item["PartNumber"])
                parts[number] = Part(number, int(item["Size"]), str(item["ETag"]))
            if not answer.get("IsTruncated"):
                return parts
            marker = int(answer["NextPartNumberMarker"])

    def upload_part(
        self, target: S3Target, key: str, upload_id: str, number: int, data: bytes
    ) -> Part:
        """Upload (or replace) part ``number``."""
        answer = self._call(
            target,
            "upload_part",
            key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return Part(number, len(data), str(answer["ETag"]))

    def complete(self, target: S3Target, key: str, upload_id: str, parts: list[Part]) -> None:
        """Assemble the object from ``parts`` (in part-number order)."""
        self._call(
            target,
            "complete_multipart_upload",
            key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
        )

    def object_size(self, target: S3Target, key: str) -> int | None:
        """The size of an object, or ``None`` when there is none."""
        try:
            answer = self._call(target, "head_object", key)
        except S3Error as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(answer["ContentLength"])

    def presigned_get(self, target: S3Target, key: str, expires_seconds: int) -> str:
        """A presigned GET URL of an object (computed locally, no request)."""
        try:
            url = self._client(target).generate_presigned_url(
                "get_object",
                Params={"Bucket": target.bucket, "Key": key},
                ExpiresIn=expires_seconds,
            )
        except _boto_errors() as exc:
            raise _describe(exc) from None
        return str(url)
