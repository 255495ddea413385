"""Security: nothing sensitive in any output, only signature headers on KMS requests, TLS and the
endpoint policy, versioned buckets and Object Lock. (Least privilege: test_template.py.)"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.rotate.app import lambda_handler as rotate
from rewrap.adapters.ncp_kms.client import NcpKmsClient
from rewrap.adapters.ncp_kms.transport import new_http_client
from rewrap.app.runtime import get_runtime
from rewrap.core.tokens import scan, token_version
from rewrap.errors import ConfigError, KmsUnavailableError
from rewrap.ncp.signing import Credentials
from rewrap.observability import logger
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event, s3_notification, sqs_event
from rewrap_local.soak import Soak, SoakConfig, s3_error
from rewrap_local.stack import REGION, LocalStack

# Faults whose error paths log, count and report the most: each must stay free of secrets.
NOISY_FAULTS = (
    "kms:server-error",
    "kms:non-json",
    "kms:short-reply",
    "kms:corrupt",
    "s3:precondition",
    "s3:overwrite",
    "invocation:crash",
    "secret:rotated",
    "secret:malformed",
    "secret:unreachable",
)


def batch_task(stack: LocalStack, key: str, version_id: str | None = None, bucket: str | None = None) -> dict[str, Any]:
    event = load_event("batch-ops-2.0.json")
    event["tasks"] = [
        dict(event["tasks"][0], taskId="t", s3Bucket=bucket or stack.bucket, s3Key=key, s3VersionId=version_id)
    ]
    return event


def result_of(response: dict[str, Any]) -> tuple[str, str]:
    (result,) = response["results"]
    return result["resultCode"], result["resultString"]


# --- nothing sensitive anywhere --------------------------------------------------------------------
def test_no_secret_signature_or_plaintext_in_any_output_across_a_faulty_run(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    # Given everything the handler emits captured: Powertools' JSON log lines and the EMF metrics
    # (stdout), every logger of the process at DEBUG (botocore, urllib3, httpx, rewrap) while the
    # handler runs, its responses and exceptions
    monkeypatch.setattr(logger.registered_handler, "stream", sys.stdout)
    caplog.set_level(logging.DEBUG)
    config = SoakConfig(objects=24, rounds=1, seed=5, large_objects=1, faults=NOISY_FAULTS)

    # When objects are rotated while KMS, S3, the secret and the invocation fail in every way
    soak = Soak(stack, config)
    caplog.handler.addFilter(soak.during_invocations())
    with soak:
        report = soak.run()
    captured = capsys.readouterr()
    text = "\n".join([captured.out, captured.err, caplog.text, *soak.outputs, report.render()])

    # Then the run really exercised those paths and the capture really saw them…
    assert report.lost == report.corrupted == 0
    assert {"secret:rotated", "secret:malformed", "invocation:crash", "kms:corrupt"} <= set(report.faults)
    assert '"message":"object rotated"' in captured.out and '"ObjectsRotated"' in captured.out
    assert "object not rotated" in caplog.text and "botocore" in caplog.text
    sensitive = soak.sensitive()
    assert len(sensitive["credential"]) >= 6 and sensitive["signature"] and sensitive["plaintext"]
    some_plaintext = next(iter(sensitive["plaintext"]))
    assert soak.find_leaks(f"x {some_plaintext} y") and soak.find_leaks(next(iter(sensitive["signature"])))
    # …and no credential, signature or plaintext (nor its base64) appears anywhere
    assert soak.find_leaks(text) == []


@pytest.mark.parametrize("signature_version", ["v2", "v1"])
def test_kms_requests_carry_the_signature_headers_and_nothing_else_credential_like(
    handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch, signature_version: str
) -> None:
    monkeypatch.setenv("NCP_KMS_SIGNATURE_VERSION", signature_version)
    stack = handler_env
    runtime = get_runtime()
    requests: list[httpx.Request] = []
    runtime.kms.http.event_hooks["request"].append(requests.append)
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"secret-0123456789abcdef"])
    stack.client("s3").put_object(Bucket=stack.bucket, Key="a.txt", Body=token.encode())
    stack.kms.rotate(stack.key_tag)
    secret = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=stack.secret_id)["SecretString"])

    rotate(s3_notification(stack.bucket, ["a.txt"]), LambdaContext())

    signature = f"x-ncp-apigw-signature-{signature_version}"
    expected = {"x-ncp-apigw-timestamp", "x-ncp-iam-access-key", signature}
    if signature_version == "v1":
        expected.add("x-ncp-apigw-api-key")  # v1 signs with the API key and must send it
    transport = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length", "content-type"}
    assert len(requests) >= 2  # encrypt, then re-encrypt
    for request in requests:
        assert set(request.headers) == expected | transport
        assert request.headers["x-ncp-iam-access-key"] == secret["accessKey"]
        assert request.url.userinfo == b"" and not request.url.query
        carried = "\n".join(f"{n}: {v}" for n, v in request.headers.items()) + request.content.decode()
        assert secret["secretKey"] not in carried
        if signature_version == "v2":
            assert secret["apiKey"] not in carried


# --- TLS and the endpoint policy -------------------------------------------------------------------
@pytest.fixture
def untrusted_https(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTPS server on loopback with a self-signed certificate: (url, its certificate, requests seen)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            body = b'{"code":"SUCCESS","msg":"","data":{}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file, seen
    finally:
        server.shutdown()
        server.server_close()


class _Static:
    def get(self, *, refresh: bool = False) -> Credentials:
        return Credentials(access_key="AKIDEXAMPLE", secret_key="secret-key-never-sent")


def test_tls_verification_is_on_and_the_environment_cannot_turn_it_off(
    untrusted_https: tuple[str, Path, list[str]], handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, certificate, seen = untrusted_https
    # the server works for a client that trusts its certificate…
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certificate))) as trusting:
        assert trusting.post(url + "/probe").status_code == 200
    # …but rewrap's client refuses it, even with SSL_CERT_FILE / proxies pointing elsewhere
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = NcpKmsClient(url, _Static(), http=new_http_client(2.0), max_attempts=1)
    with pytest.raises(KmsUnavailableError, match="ConnectError"):
        client.re_encrypt("key-tag", ["ncpkms:v1:AAAA"])
    assert seen == ["/probe"]  # no request of ours got past the handshake
    # and the runtime's own client is built the same way: verification on, environment ignored
    http = get_runtime().kms.http
    assert http.trust_env is False
    pool_context = http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert pool_context.verify_mode is ssl.CERT_REQUIRED and pool_context.check_hostname


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://kms.apigw.ntruss.com",  # plain http off loopback
        "http://127.0.0.1.nip.io:8787",  # looks like loopback, is not
        "https://AKIDEXAMPLE:s3cr3t@kms.apigw.ntruss.com",  # httpx would send these as Basic auth
        "https://kms.apigw.ntruss.com/?access_key=AKIDEXAMPLE",
    ],
)
def test_the_endpoint_policy_is_enforced_when_the_handler_loads_its_configuration(
    handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("NCP_KMS_ENDPOINT", endpoint)
    handler_env.client("s3").put_object(Bucket=handler_env.bucket, Key="a.txt", Body=b"ncpkms:v1:AAAA")
    requests_before = sum(handler_env.kms.stats.snapshot()["requests"].values())

    with pytest.raises(ConfigError, match="NCP_KMS_ENDPOINT") as caught:
        rotate(s3_notification(handler_env.bucket, ["a.txt"]), LambdaContext())

    assert "s3cr3t" not in str(caught.value) and "AKIDEXAMPLE" not in str(caught.value)
    assert sum(handler_env.kms.stats.snapshot()["requests"].values()) == requests_before


# --- versioned buckets -----------------------------------------------------------------------------
def test_versioned_bucket_rotation_adds_a_version_and_the_old_one_is_reported_noncurrent(
    handler_env: LocalStack,
) -> None:
    stack = handler_env
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    kms = get_runtime().kms
    (token,) = kms.encrypt(stack.key_tag, [b"v-secret"])
    original = f"secret={token}\n".encode()
    old_version = s3.put_object(Bucket=stack.bucket, Key="a.txt", Body=original)["VersionId"]
    stack.kms.rotate(stack.key_tag)

    code, text = result_of(rotate(batch_task(stack, "a.txt"), LambdaContext()))

    assert (code, text) == ("Succeeded", "rotated: 1/1 tokens v1 -> v2")
    listed = s3.list_object_versions(Bucket=stack.bucket, Prefix="a.txt")["Versions"]
    assert len(listed) == 2 and {v["VersionId"] for v in listed if not v["IsLatest"]} == {old_version}
    old_body = s3.get_object(Bucket=stack.bucket, Key="a.txt", VersionId=old_version)["Body"].read()
    assert old_body == original  # S3 versions are immutable: the old one keeps its key version
    (current,) = scan(s3.get_object(Bucket=stack.bucket, Key="a.txt")["Body"].read())[0]
    assert current.version == 2 and kms.decrypt(stack.key_tag, [current.text]) == [b"v-secret"]
    # a Batch Operations task (from a versioned inventory) naming the old version: reported, untouched
    code, text = result_of(rotate(batch_task(stack, "a.txt", version_id=old_version), LambdaContext()))
    assert code == "PermanentFailure" and text.startswith("noncurrent-version: ")
    assert len(s3.list_object_versions(Bucket=stack.bucket, Prefix="a.txt")["Versions"]) == 2


# --- Object Lock -----------------------------------------------------------------------------------
@pytest.fixture
def locked(handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalStack, str]:
    """An Object Lock bucket (versioned by necessity) that rewrap is allowed to rotate."""
    bucket = f"{handler_env.bucket}-locked"
    handler_env.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectLockEnabledForBucket=True
    )
    monkeypatch.setenv("REWRAP_BUCKETS", f"{handler_env.bucket},{bucket}")
    return handler_env, bucket


def _put_locked(stack: LocalStack, bucket: str, key: str, lock: str, *, envelope: bool = False) -> tuple[str, bytes]:
    s3 = stack.client("s3")
    (token,) = get_runtime().kms.encrypt(stack.key_tag, [b"locked-secret"])
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    extra: dict[str, Any] = {"Metadata": {"wrapped-key": token}} if envelope else {}
    if lock == "retention":
        extra.update(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    body = b"sealed" if envelope else f"secret={token}\n".encode()
    version = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)["VersionId"]
    if lock == "legal-hold":
        s3.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON"})
    return version, body


@pytest.mark.parametrize("lock", ["legal-hold", "retention"])
def test_locked_text_object_gets_a_new_locked_version_and_the_locked_one_is_kept(
    locked: tuple[LocalStack, str], lock: str
) -> None:
    # S3 Object Lock protects versions, not keys: a rotation adds a version and restates the lock
    stack, bucket = locked
    s3 = stack.client("s3")
    old_version, original = _put_locked(stack, bucket, "a.txt", lock)
    stack.kms.rotate(stack.key_tag)

    code, text = result_of(rotate(batch_task(stack, "a.txt", bucket=bucket), LambdaContext()))

    assert (code, text) == ("Succeeded", "rotated: 1/1 tokens v1 -> v2")
    assert s3.get_object(Bucket=bucket, Key="a.txt", VersionId=old_version)["Body"].read() == original
    old = s3.head_object(Bucket=bucket, Key="a.txt", VersionId=old_version)
    new = s3.head_object(Bucket=bucket, Key="a.txt")
    assert new["VersionId"] != old_version
    for name in ("ObjectLockLegalHoldStatus", "ObjectLockMode", "ObjectLockRetainUntilDate"):
        assert new.get(name) == old.get(name), name  # the new version is locked exactly like the old
    (token,) = scan(s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read())[0]
    assert token_version(token.text) == 2


def test_locked_object_the_role_may_not_relock_fails_permanently_and_is_never_retried(
    locked: tuple[LocalStack, str],
) -> None:
    # On AWS, restating a legal hold or retention needs s3:PutObjectLegalHold / s3:PutObjectRetention,
    # which the template does not grant: S3 answers 403, as simulated here (moto has no IAM)
    stack, bucket = locked
    old_version, original = _put_locked(stack, bucket, "held.txt", "legal-hold")
    stack.kms.rotate(stack.key_tag)

    def deny_lock_headers(request: Any, **_: Any) -> Any:
        if "x-amz-object-lock-legal-hold" in request.headers:
            return s3_error(request.url, 403, "AccessDenied")
        return None

    get_runtime().s3.meta.events.register("before-send.s3.PutObject", deny_lock_headers)
    body = json.dumps(s3_notification(bucket, ["held.txt"]))
    queue_arn = f"arn:aws:sqs:{REGION}:123456789012:rewrap-rotate"
    event = sqs_event([{"MessageId": "m1", "ReceiptHandle": "r1", "Body": body}], queue_arn)

    response = rotate(event, LambdaContext())

    assert response == {"batchItemFailures": []}  # not retried: parked with its reason
    sqs = stack.client("sqs")
    (parked,) = sqs.receive_message(QueueUrl=stack.dead_letter_queue_url, MessageAttributeNames=["All"])["Messages"]
    reason = parked["MessageAttributes"]["rewrap-failure"]["StringValue"]
    assert reason.startswith("s3-denied: ") and "Object Lock" in reason
    s3 = stack.client("s3")
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == [old_version]
    assert s3.get_object(Bucket=bucket, Key="held.txt")["Body"].read() == original


def test_locked_envelope_gets_a_new_version_that_keeps_the_legal_hold(locked: tuple[LocalStack, str]) -> None:
    # The metadata-replacing self-copy restates the legal hold (with the empty body's Content-MD5 that
    # Object Lock headers come with); the locked version itself is kept
    stack, bucket = locked
    old_version, _ = _put_locked(stack, bucket, "env.bin", "legal-hold", envelope=True)
    stack.kms.rotate(stack.key_tag)

    code, text = result_of(rotate(batch_task(stack, "env.bin", bucket=bucket), LambdaContext()))

    assert (code, text) == ("Succeeded", "rotated: 1/1 tokens v1 -> v2")
    s3 = stack.client("s3")
    versions = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert old_version in versions and len(versions) == 2
    new = s3.head_object(Bucket=bucket, Key="env.bin")
    assert new["ObjectLockLegalHoldStatus"] == "ON" and token_version(new["Metadata"]["wrapped-key"]) == 2
