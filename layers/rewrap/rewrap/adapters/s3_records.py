"""rewrap's own small records on S3 (the sweep's checkpoints): read with their ETag and the time S3 stored
them, and replaced only on the ETag read, so that of two writers racing for one record, one wins."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.adapters.s3_errors import MISSING_CODES, error_code, translate
from rewrap.core.ports import StoredRecord


class OwnRecords:
    """Part of ``S3Store``: needs its ``client`` and ``call``."""

    client: Any

    def call(self, operation: str, method: Any, **params: Any) -> Any:
        raise NotImplementedError

    def read_record(self, bucket: str, key: str) -> StoredRecord | None:
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise translate(exc, "GET") from exc
        return StoredRecord(data, str(response["ETag"]), response["LastModified"])

    def put_record(self, bucket: str, key: str, data: bytes, content_type: str, if_match: str | None) -> None:
        """``If-Match`` the ETag read, or ``If-None-Match: *`` for a record that did not exist: a 412 (or
        the 409 of a concurrent conditional write) is ``ObjectChangedError``."""
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        self.call(
            "PUT", self.client.put_object, Bucket=bucket, Key=key, Body=data, ContentType=content_type, **condition
        )
