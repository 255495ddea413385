"""A translated error keeps what it was translated from, so an operator's traceback shows S3's own answer."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from rewrap.adapters.s3 import S3Store
from rewrap.core.metadata import context_of
from rewrap.core.ports import ObjectRef
from rewrap.errors import ObjectRejectedError, RewrapError


def test_an_s3_error_keeps_the_client_error_it_came_from() -> None:
    # Given S3 answering a GET with a server error
    client = boto3.session.Session(region_name="ap-northeast-2").client(
        "s3", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stub = Stubber(client)
    stub.add_client_error("get_object", service_error_code="InternalError", http_status_code=500)
    store = S3Store(client)

    # When the store reads through it
    with stub, pytest.raises(RewrapError) as caught:
        store.read_small(ObjectRef("bucket", "key"), 1024)

    # Then the error is classified, and its cause is S3's answer
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.__cause__.response["Error"]["Code"] == "InternalError"


def test_a_bad_context_keeps_the_decoding_error() -> None:
    with pytest.raises(ObjectRejectedError) as caught:
        context_of({"ncpkms-context": "not base64!"})
    assert caught.value.__cause__ is not None
