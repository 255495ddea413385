"""`make demo`: rotate a seeded bucket end to end on the embedded stack (loopback only).

1. start moto (server mode) and the NCP KMS emulator; seed a bucket with a mix of objects at key v1
2. rotate the key in the emulator (v2) and run the real rotate handler on an S3 notification
3. run it again through SQS: nothing is written (converged)
4. rotate again (v3) and run the real sweep handler: schedule → queue → rotate invocations
5. decrypt every token through the emulator and compare with the original plaintext
6. the census says SAFE; `rewrap retire` disables v1 and v2 in the emulator and shows its evidence page
Exits non-zero when anything is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rewrap.app.runtime import get_runtime, reset_runtime
from rewrap.core.tokens import scan, token_version
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event, s3_notification
from rewrap_local.stack import LocalStack, environment, local_stack


@dataclass
class Seeded:
    key: str
    kind: str
    body: bytes
    plaintexts: list[bytes] = field(default_factory=list)  # in token order
    data_key: bytes | None = None


def main() -> int:
    started = time.perf_counter()
    quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
    api = os.environ.get("NCP_KMS_API", "").strip().lower() or "1.0"
    signature_version = os.environ.get("NCP_KMS_SIGNATURE_VERSION", "v2")
    print("rewrap demo — moto server + NCP KMS emulator on loopback; no AWS or NCP account is used")
    print(f"NCP KMS API {api} (NCP_KMS_API), signature {signature_version}\n")
    with local_stack(signature_version=signature_version, api=api) as stack:
        environ = {**stack.environment(), **quiet}
        with environment(environ):
            reset_runtime()
            try:
                ok = _run(stack)
            finally:
                reset_runtime()
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def _run(stack: LocalStack) -> bool:
    from rewrap.app.handlers import rotate, sweep

    runtime = get_runtime()
    s3 = stack.client("s3")
    seeded = _seed(stack, runtime.kms)
    print(f"seeded s3://{stack.bucket} with {len(seeded)} objects, key {stack.key_tag[:12]}… at v1")
    before = _census(stack, seeded)
    etags_v1 = _etags(s3, stack.bucket, seeded)

    version = stack.kms.rotate(stack.key_tag)
    print(f"\n[1] NCP rotated the key → v{version}; S3 notification ({len(seeded)} records) → rotate handler")
    stack.kms.stats.reset()
    summary = rotate(s3_notification(stack.bucket, [s.key for s in seeded]), LambdaContext())
    kms_requests = stack.kms.stats.requests["re-encrypt"]
    rotated_tokens = stack.kms.stats.items["re-encrypt"]
    after = _census(stack, seeded)
    _table(seeded, before, after)
    print(f"    result: {_short(summary)}")
    print(
        f"    KMS re-encrypt requests: {kms_requests} for {rotated_tokens} tokens "
        f"({kms_requests / max(rotated_tokens, 1):.4f} requests per token)"
    )

    print("\n[2] the same objects again, through SQS → rotate handler (must write nothing)")
    etags_v2 = _etags(s3, stack.bucket, seeded)
    sqs_payload = load_event("sqs-s3.json")
    record = sqs_payload["Records"][0]
    record["body"] = json.dumps(s3_notification(stack.bucket, [s.key for s in seeded]))
    response = rotate(sqs_payload, LambdaContext())
    unchanged = _etags(s3, stack.bucket, seeded) == etags_v2
    print(f"    batchItemFailures: {response['batchItemFailures']}; objects unchanged: {unchanged}")

    version = stack.kms.rotate(stack.key_tag)
    print(f"\n[3] NCP rotated again → v{version}; schedule → sweep handler → queue → rotate handler")
    stack.kms.stats.reset()
    report = sweep(load_event("schedule.json"), LambdaContext(function_name="rewrap-sweep"))
    probe = "key info" if stack.kms.stats.requests.get("key-info") else "an encrypt probe"
    delivered = drain_queue(stack.client("sqs"), stack.queue_url, rotate)
    final = _census(stack, seeded)
    print(
        f"    sweep: listed {report['listed']}, enqueued {report['enqueued']} keys in {report['messages']} messages; "
        f"rotate invocations: {delivered['invocations']}, failed messages: {delivered['failed']}; "
        f"newest version learned from {probe}"
    )
    _table(seeded, after, final)

    print("\n[4] verifying every object against its original plaintext through the emulator")
    problems = _verify(stack, runtime.kms, seeded, version)
    plain = next(s for s in seeded if s.kind == "plain text")
    if _etags(s3, stack.bucket, [plain]) != {plain.key: etags_v1[plain.key]}:
        problems.append(f"{plain.key}: an object without tokens was rewritten")
    if not unchanged:
        problems.append("the second run rewrote objects that were already current")
    for problem in problems:
        print(f"    FAIL {problem}")
    if not problems:
        tokens = sum(len(s.plaintexts) + (1 if s.data_key else 0) for s in seeded)
        print(f"    all {len(seeded)} objects verified: {tokens} tokens at v{version}, plaintext unchanged")

    command = ["census", f"s3://{stack.bucket}/", "--min-version", str(version), "--quiet"]
    print(f"\n[5] before disabling the old versions: rewrap {' '.join(command[:-1])}", flush=True)
    # The operator's own command, run as the operator runs it, in the stack's environment.
    census_ok = subprocess.run([sys.executable, "-m", "rewrap_cli", *command], check=False).returncode == 0  # noqa: S603
    if not census_ok:
        print(f"    FAIL the census still finds tokens older than v{version}")
        return False
    return not problems and _retire(stack, version)


def _retire(stack: LocalStack, version: int) -> bool:
    """The last step: disable the old versions on a fresh census, and show the evidence it leaves."""
    reports = f"s3://{stack.bucket}/reports/"
    command = ["retire", f"s3://{stack.bucket}/", "--below", str(version), "--reports", reports, "--yes"]
    print(f"\n[6] retire the old versions: rewrap {' '.join(command)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "rewrap_cli", *command], check=False)  # noqa: S603
    states = stack.kms.version_states(stack.key_tag)
    print(f"    key versions in the emulator now: {', '.join(f'v{v} {s}' for v, s in states.items())}")
    old = [s for v, s in states.items() if v < version]
    if done.returncode != 0 or any(s != "DISABLED" for s in old):
        print(f"    FAIL the old versions were not retired (exit {done.returncode})")
        return False
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"reports/retire/{stack.key_tag}/").get("Contents", [])
    page = next(item["Key"] for item in listed if item["Key"].endswith("-retired.md"))
    print(f"\n    the evidence page, s3://{stack.bucket}/{page}:\n")
    text = s3.get_object(Bucket=stack.bucket, Key=page)["Body"].read().decode()
    print("\n".join(f"    | {line}" for line in text.splitlines()))
    return True


def _seed(stack: LocalStack, kms: Any) -> list[Seeded]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    s3 = stack.client("s3")
    seeded: list[Seeded] = []

    def put(key: str, kind: str, secrets: list[bytes], render: Callable[[list[str]], str], **extra: Any) -> None:
        tokens = kms.encrypt(stack.key_tag, secrets) if secrets else []
        body = render(tokens).encode()
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body, **extra)
        seeded.append(Seeded(key, kind, body, secrets))

    put("secrets/api-token.txt", "bare token", [b"sk-live-0001"], lambda t: t[0], ContentType="text/plain")
    put(
        "docs/config.json",
        "JSON",
        [b"db-password", b"smtp-password", b"webhook-signing-key"],
        lambda t: json.dumps({"db": {"password": t[0]}, "smtp": t[1], "hooks": [t[2]]}, indent=2),
        ContentType="application/json",
        Metadata={"owner": "platform-team"},
    )
    put(
        "data/records.ndjson",
        "NDJSON",
        [f"customer-{i:05d}".encode() for i in range(2000)],
        lambda t: "".join(json.dumps({"id": i, "ssn": token}) + "\n" for i, token in enumerate(t)),
        ContentType="application/x-ndjson",
    )
    put(
        "docs/hello world+ünï.env",
        ".env (unicode key)",
        [b"api-key-value", b"db-password-value"],
        lambda t: f"# app settings\nAPI_KEY={t[0]}\nDB_URL=postgres://app@db/app\nDB_PASSWORD={t[1]}\n",
        ContentType="text/plain; charset=utf-8",
    )
    put("notes/readme.txt", "plain text", [], lambda t: "nothing secret here\n", ContentType="text/plain")

    data_key = kms.create_custom_key(stack.key_tag, request_plain_key=True)
    body = os.urandom(1 << 20)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(data_key.plaintext).encrypt(nonce, body, None)
    s3.put_object(
        Bucket=stack.bucket,
        Key="envelopes/report.bin",
        Body=sealed,
        ContentType="application/octet-stream",
        CacheControl="private, max-age=600",
        ContentDisposition='attachment; filename="report.bin"',
        Metadata={"wrapped-key": data_key.ciphertext, "cipher": "AES-256-GCM"},
        Tagging="classification=confidential",
    )
    seeded.append(Seeded("envelopes/report.bin", "envelope (1 MiB binary)", body, [], data_key.plaintext))
    return seeded


def _tokens(stack: LocalStack, item: Seeded) -> list[str]:
    s3 = stack.client("s3")
    if item.data_key is not None:
        return [s3.head_object(Bucket=stack.bucket, Key=item.key)["Metadata"]["wrapped-key"]]
    body = s3.get_object(Bucket=stack.bucket, Key=item.key)["Body"].read()
    return [t.text for t in scan(body)[0]]


def _census(stack: LocalStack, seeded: list[Seeded]) -> dict[str, str]:
    out = {}
    for item in seeded:
        versions = sorted({token_version(t) for t in _tokens(stack, item)})
        out[item.key] = ",".join(f"v{v}" for v in versions) or "—"
    return out


def _etags(s3: Any, bucket: str, seeded: list[Seeded]) -> dict[str, str]:
    return {s.key: s3.head_object(Bucket=bucket, Key=s.key)["ETag"] for s in seeded}


def _table(seeded: list[Seeded], before: dict[str, str], after: dict[str, str]) -> None:
    print(f"    {'object':<30} {'kind':<24} {'tokens':>6}  {'before':>7} → after")
    for item in seeded:
        count = len(item.plaintexts) + (1 if item.data_key else 0)
        print(f"    {item.key:<30} {item.kind:<24} {count:>6}  {before[item.key]:>7} → {after[item.key]}")


def _short(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items() if v and k != "total")


def _verify(stack: LocalStack, kms: Any, seeded: list[Seeded], version: int) -> list[str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    problems = []
    s3 = stack.client("s3")
    for item in seeded:
        tokens = _tokens(stack, item)
        if any(token_version(t) != version for t in tokens):
            problems.append(f"{item.key}: not every token is at v{version}")
        if item.data_key is not None:
            (data_key,) = kms.decrypt(stack.key_tag, tokens)
            sealed = s3.get_object(Bucket=stack.bucket, Key=item.key)["Body"].read()
            if data_key != item.data_key or AESGCM(data_key).decrypt(sealed[:12], sealed[12:], None) != item.body:
                problems.append(f"{item.key}: envelope no longer opens to the original body")
            head = s3.head_object(Bucket=stack.bucket, Key=item.key)
            tags = s3.get_object_tagging(Bucket=stack.bucket, Key=item.key)["TagSet"]
            kept = (head.get("CacheControl"), head.get("ContentDisposition"), head["Metadata"].get("cipher"), tags)
            expected = (
                "private, max-age=600",
                'attachment; filename="report.bin"',
                "AES-256-GCM",
                [{"Key": "classification", "Value": "confidential"}],
            )
            if kept != expected:
                problems.append(f"{item.key}: headers, metadata or tags were not preserved")
        elif _digest(kms.decrypt(stack.key_tag, tokens) if tokens else []) != _digest(item.plaintexts):
            problems.append(f"{item.key}: tokens no longer decrypt to the original plaintext")
    return problems


def _digest(values: list[bytes]) -> str:
    return hashlib.sha256(b"\0".join(values)).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
