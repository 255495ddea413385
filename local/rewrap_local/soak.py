"""Fault-injection soak: objects of every kind rotated through the real rotate handler (SQS batches
and S3 Batch Operations) while faults are injected, then re-run until converged. After every run
each object is checked against its original: its tokens decrypt (through the emulator) to the same
plaintext, every other byte, header, metadata value and tag is unchanged, an object deleted by a
racing writer stays deleted and a racing writer's content is kept.

    python -m rewrap_local.soak [--objects N] [--rounds R] [--seed S]

Faults are injected where they really happen:

* KMS: the emulator's fault queue (every kind; ``corrupt`` is caught because the soak runs with
  REWRAP_VERIFY=true) and the NCP secret rotated mid-run (new value in Secrets Manager, new access
  key registered in the emulator, the old one removed);
* S3: botocore ``before-send`` hooks on the runtime's own S3 client answer 503 SlowDown, 412 or a
  failed part, or slip a concurrent overwrite or delete (through another client) in before our
  conditional write goes out;
* the invocation: a crash raised at a random S3 request, after which nothing more of that
  invocation reaches S3 (the sandbox died; a multipart upload is left behind, never aborted), and
  contexts with little remaining time while KMS is slow;
* Secrets Manager: unreachable (a cold container whose endpoint refuses connections) or a
  malformed secret (invalid JSON, or JSON without secretKey), fixed again after the run.

moto 5.2.5 ignores ``If-Match`` on CopyObject and CompleteMultipartUpload and
``x-amz-copy-source-if-match`` on UploadPartCopy; the hooks enforce S3's documented semantics for
those requests (412 PreconditionFailed, 404 NoSuchKey), so races are exercised on every write path.

Rounds alternate: faults one kind at a time on disjoint slices of the objects, then random mixes.
Each round starts with a key rotation, runs its phases, then converges: retryable failures come
back by themselves (SQS redelivery, Batch Operations retries), permanent ones are re-run after the
cause is fixed (dead-letter queue redrive, a job on the failed tasks), exactly as an operator would.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from rewrap.engine import STAMP_SIZE_METADATA, STAMP_VERSION_METADATA
from rewrap.runtime import Runtime, get_runtime, reset_runtime
from rewrap.tokens import scan, token_version
from rewrap_local.emulator import EmulatorError, KmsEmulator
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event, s3_notification
from rewrap_local.stack import LocalStack, environment, local_stack, provision

MiB = 1024 * 1024
KINDS = ("bare", "json", "ndjson", "env", "envelope", "convergent", "large", "empty", "plain")
STAMPS = frozenset({STAMP_VERSION_METADATA, STAMP_SIZE_METADATA})  # rewrap's own bookkeeping metadata
COMPARED_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentLanguage",
    "ContentDisposition",
    "CacheControl",
    "StorageClass",
    "ServerSideEncryption",
)
# Every plaintext starts with this, so a leak of one (or of its base64, which starts with
# "c2VjcmV0") is found by a search instead of one comparison per plaintext.
PLAINTEXT_PREFIX = "secret-"
_PLAINTEXT_RE = re.compile(r"secret-[0-9a-f]{16}|c2VjcmV0")
_SIGNATURE_RE = re.compile(r"[A-Za-z0-9+/]{43}=")

# What the soak changes in the stack's configuration.
SOAK_ENVIRONMENT = {
    "REWRAP_VERIFY": "true",  # a well-formed but corrupt reply must be refused, never written
    # A warm container trusts the newest version it saw for this long, so right after a rotation
    # it would answer "current" (README: known limits); the soak rotates every round.
    "REWRAP_VERSION_CACHE_SECONDS": "0",
    "REWRAP_STREAM_THRESHOLD_BYTES": str(4 * MiB),  # "large" objects are streamed in 6 MiB parts
    "REWRAP_SEGMENT_BYTES": str(6 * MiB),
    "NCP_KMS_TIMEOUT_SECONDS": "1.5",  # an injected 2 s hang is a client timeout
    "REWRAP_CONCURRENCY": "8",
}
FAULT_KINDS = (
    "kms:throttle",
    "kms:throttle-retry-after",
    "kms:server-error",
    "kms:timeout",
    "kms:reset",
    "kms:non-json",
    "kms:short-reply",
    "kms:extra-item",
    "kms:bad-pattern",
    "kms:lower-version",
    "kms:corrupt",
    "kms:verify-decrypt",
    "s3:slowdown",
    "s3:overwrite",
    "s3:delete",
    "s3:precondition",
    "s3:part-failure",
    "invocation:crash",
    "invocation:out-of-time",
    "secret:rotated",
    "secret:unreachable",
    "secret:malformed",
)
# Phases that can only bite with a large (multipart) object in their slice get those first.
_WANTS_LARGE = ("s3:part-failure", "invocation:crash", "s3:overwrite", "s3:delete", "invocation:out-of-time")


class SimulatedCrash(BaseException):
    """The invocation dies mid-flight. A BaseException, so nothing in rewrap can catch it."""


# --- S3 at the HTTP boundary ------------------------------------------------------------------------
class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def s3_error(url: str, status: int, code: str) -> AWSResponse:
    """An S3 error response, as botocore would have received it."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by the soak</Message><RequestId>soak</RequestId></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
    return AWSResponse(url, status, headers, _Raw(body))


def _bucket_key(url: str) -> tuple[str, str]:
    """(bucket, key) of a path-style URL (what botocore uses for the loopback moto endpoint)."""
    bucket, _, key = urlsplit(url).path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def _etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def _header(request: Any, name: str) -> str | None:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _S3Fault:
    kind: str  # slowdown | precondition | part-failure | overwrite | delete
    ops: frozenset[str]
    remaining: int
    status: int = 503
    code: str = "SlowDown"

    @property
    def conditional_only(self) -> bool:
        """Races and rejected conditions hit only our conditional writes (they carry If-Match)."""
        return self.kind in ("overwrite", "delete", "precondition")


WRITE_OPS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
READ_OPS = frozenset({"HeadObject", "GetObject", "GetObjectTagging"})


class S3Faults:
    """Faults on a runtime's S3 client, injected by botocore event hooks. Thread-safe."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._lock = threading.Lock()
        self._queue: list[_S3Fault] = []
        self._crash_in: int | None = None
        self._crash_op: str | None = None
        self.crashed = False
        self.injected: Counter[str] = Counter()
        self.injected_at: Counter[str] = Counter()  # "<kind> <operation>"
        self.retries = 0
        # LocalStack enforces these conditions itself: there the hooks leave them to it.
        self.emulate_conditions = corpus.stack.backend == "moto"

    def attach(self, client: Any) -> None:
        """Idempotent: hooks are registered once per client (``unique_id``)."""
        client.meta.events.register("before-send.s3", self._before_send, unique_id="rewrap-soak-faults")
        client.meta.events.register("after-call.s3", self._after_call, unique_id="rewrap-soak-retries")

    def add(self, kind: str, ops: frozenset[str], times: int, *, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self._queue.append(_S3Fault(kind, ops, times, status, code))

    def arm_crash(self, after_requests: int, op: str | None = None) -> None:
        """Crash at the ``after_requests``-th S3 request (of ``op`` only, when given)."""
        with self._lock:
            self._crash_in, self._crash_op = after_requests, op

    def revive(self) -> None:
        """A new invocation: the dead sandbox is gone (an armed crash that did not fire stays armed)."""
        with self._lock:
            self.crashed = False

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._crash_in = None
            self.crashed = False

    def _after_call(self, parsed: dict[str, Any], **_: Any) -> None:
        attempts = int(parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
        if attempts:
            with self._lock:
                self.retries += attempts

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        with self._lock:
            if self.crashed or self._crash_now(op):
                raise SimulatedCrash(f"the sandbox died before {op}")
            fault = self._take(op, request)
        if fault is not None:
            if fault.kind in ("overwrite", "delete"):
                self.corpus.race(fault.kind, _bucket_key(request.url)[1])
            else:
                return s3_error(request.url, fault.status, fault.code)
        return self._conditions(op, request) if self.emulate_conditions else None

    def _crash_now(self, op: str) -> bool:
        if self._crash_in is None or self._crash_op not in (None, op):
            return False
        self._crash_in -= 1
        if self._crash_in > 0:
            return False
        self._crash_in = None
        self.crashed = True
        self.injected["invocation:crash"] += 1
        self.injected_at[f"crash {op}"] += 1
        return True

    def _take(self, op: str, request: Any) -> _S3Fault | None:
        for fault in self._queue:
            if op not in fault.ops or (fault.conditional_only and not _header(request, "If-Match")):
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._queue.remove(fault)
            self.injected[f"s3:{fault.kind}"] += 1
            self.injected_at[f"{fault.kind} {op}"] += 1
            return fault
        return None

    def _conditions(self, op: str, request: Any) -> AWSResponse | None:
        """S3's conditional-request semantics where moto ignores them (see the module docstring)."""
        if_match = _header(request, "If-Match")
        if op in ("CopyObject", "CompleteMultipartUpload") and if_match:
            refusal = self._check(request.url, *_bucket_key(request.url), None, if_match)
            if refusal is not None:
                return refusal
        source_match = _header(request, "x-amz-copy-source-if-match")
        if op in ("CopyObject", "UploadPartCopy") and source_match:
            source, _, version_id = unquote(_header(request, "x-amz-copy-source") or "").partition("?versionId=")
            bucket, _, key = source.lstrip("/").partition("/")
            return self._check(request.url, bucket, key, version_id or None, source_match)
        return None

    def _check(self, url: str, bucket: str, key: str, version_id: str | None, expected: str) -> AWSResponse | None:
        where = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            current = self.corpus.s3.head_object(**where)["ETag"]
        except ClientError:
            return s3_error(url, 404, "NoSuchKey")
        return None if _etag(current) == _etag(expected) else s3_error(url, 412, "PreconditionFailed")


# --- the objects and their originals ---------------------------------------------------------------
@dataclass
class Original:
    """What an object must still be: tokens aside, every byte, header, metadata value and tag."""

    key: str
    kind: str
    key_tag: str
    context: bytes | None
    parts: tuple[bytes, ...]  # the bytes between tokens (an envelope: its whole body)
    escaped: tuple[bool, ...]  # per body token: written with JSON-escaped slashes
    plaintexts: tuple[bytes, ...]  # per token, in body order or token_metadata order
    metadata: dict[str, str]
    headers: dict[str, Any]
    tags: tuple[tuple[str, str], ...] = ()
    token_metadata: tuple[str, ...] = ()
    present: bool = True


@dataclass
class Verdict:
    key: str
    state: str  # current | pending | absent | lost | corrupted
    detail: str = ""


class Corpus:
    """Seeds the objects, remembers their originals and checks the bucket against them."""

    def __init__(self, stack: LocalStack, convergent_tag: str, rng: random.Random) -> None:
        self.stack = stack
        self.kms = stack.kms
        self.s3 = stack.client("s3")
        self.bucket = stack.bucket
        self.convergent_tag = convergent_tag
        self.rng = rng
        self.originals: dict[str, Original] = {}
        self.plaintexts: set[str] = set()
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[Any, int | None]] = {}  # key -> (HEAD fingerprint, lowest version)

    # seeding
    def seed(self, count: int, large: int) -> None:
        kinds = [k for k in KINDS if k != "large"]
        plan = ["large"] * large + [kinds[i % len(kinds)] for i in range(max(0, count - large))]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: self._seed_one(*item), enumerate(plan)))

    def _secret(self) -> bytes:
        with self._lock:
            value = f"{PLAINTEXT_PREFIX}{self.rng.getrandbits(64):016x}"
            self.plaintexts.add(value)
        return value.encode()

    def _token(self, key_tag: str | None = None, context: bytes | None = None) -> str:
        return self.kms.encrypt(key_tag or self.stack.key_tag, self._secret(), context)

    def _seed_one(self, index: int, kind: str) -> None:
        names = ["plain", "with space", "plus+sign", "percent%41", "ünïcödé-키", "a=b&c", "tab~tilde"]
        name = names[index % len(names)]
        extension = {"json": "json", "ndjson": "ndjson", "env": "env", "envelope": "bin", "large": "ndjson"}
        key = f"{kind}/{index:05d} {name}.{extension.get(kind, 'txt')}" if index % 3 else f"{kind}/{index:05d}"
        put: dict[str, Any] = {}
        if index % 4 == 1:
            put.update(ContentType="text/x-soak", CacheControl="no-store", ContentLanguage="ko")
        if index % 5 == 2:
            put.update(Tagging=f"owner=soak&n={index}", Metadata={"team": "a", "note": "ncpkms tokens inside"})
        if index % 7 == 3:
            put.update(StorageClass="STANDARD_IA", ServerSideEncryption="AES256", ContentDisposition="inline")
        context: bytes | None = None
        key_tag = self.stack.key_tag
        token_metadata: tuple[str, ...] = ()
        metadata = dict(put.pop("Metadata", {}))
        if kind == "bare":
            body = self._token().encode() + (b"\n" if index % 2 else b"")
        elif kind == "json":
            document = {"id": index, "password": self._token(), "nested": {"apiKey": self._token(), "list": [1]}}
            body = json.dumps(document, indent=1).encode()
            if index % 2:  # some producers escape slashes in JSON
                body = body.replace(b"/", b"\\/")
        elif kind == "ndjson":
            body = "".join(
                json.dumps({"row": j, "secret": self._token()}) + "\n" for j in range(5 + index % 40)
            ).encode()
        elif kind == "env":
            body = f'# service {index}\nDB_PASSWORD={self._token()}\nAPI_KEY="{self._token()}"\nPLAIN=value\n'.encode()
        elif kind == "envelope":
            body = self.rng.randbytes(256 + index % 2048)  # sealed data; never read by rewrap
            token_metadata = ("wrapped-key", "wrapped-key-2") if index % 3 == 0 else ("wrapped-key",)
            metadata.update({name: self._token() for name in token_metadata}, iv=f"{index:024x}")
        elif kind == "convergent":
            key_tag, context = self.convergent_tag, f"tenant-{index}".encode()
            metadata.update({"ncpkms-key-tag": key_tag, "ncpkms-context": base64.b64encode(context).decode()})
            body = f"tenant={index}\nsecret={self._token(key_tag, context)}\nother={self._token(key_tag, context)}\n"
            body = body.encode()
        elif kind == "large":
            body = self._large_body(index)
        elif kind == "empty":
            body = b""
        else:
            body = b"no tokens here \xff\xfe\x00 ncpkms is only a word\n" * (1 + index % 20)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata, **put)
        self.remember(key, kind, key_tag, context, body, token_metadata)

    def _large_body(self, index: int) -> bytes:
        """~7 MiB: tokens in the first segment, filler, and (every other one) tokens at the end, so
        some parts are uploaded and some copied server-side."""
        head = "".join(json.dumps({"row": j, "secret": self._token()}) + "\n" for j in range(300)).encode()
        filler = (b"0123456789abcdef" * 4 + b"\n") * ((7 * MiB - len(head)) // 65)
        tail = "".join(f"tail {j} {self._token()}\n" for j in range(20)).encode() if index % 2 == 0 else b""
        return head + filler + tail

    def remember(
        self,
        key: str,
        kind: str,
        key_tag: str,
        context: bytes | None,
        body: bytes,
        token_metadata: tuple[str, ...] = (),
    ) -> None:
        """Record ``key`` as it is now in the bucket."""
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        metadata = dict(head["Metadata"])
        tokens = [metadata.pop(name) for name in token_metadata]
        if token_metadata:
            parts, escaped = (body,), ()
        else:
            found = scan(body)[0]
            parts, escaped = _parts(body, found), tuple(t.escaped for t in found)
            tokens = [t.text for t in found]
        tag_set = self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
        tags = tuple(sorted((t["Key"], t["Value"]) for t in tag_set))
        original = Original(
            key=key,
            kind=kind,
            key_tag=key_tag,
            context=context,
            parts=parts,
            escaped=escaped,
            plaintexts=tuple(self.kms.decrypt(key_tag, t, context) for t in tokens),
            metadata=metadata,
            headers=_headers(head),
            tags=tags,
            token_metadata=token_metadata,
        )
        with self._lock:
            self.originals[key] = original

    # racing writers (called from the S3 hooks, in the engine's threads)
    def race(self, kind: str, key: str) -> None:
        with self._lock:
            original = self.originals.get(key)
            if original is None or not original.present:
                return
            if kind == "delete":
                self.originals[key] = replace(original, present=False)
        if kind == "delete":
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            return
        body = f"written by someone else: {self._token()}\n".encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain")
        self.remember(key, "overwritten", self.stack.key_tag, None, body)

    # checking
    def keys(self, *, present: bool = True) -> list[str]:
        return [k for k, o in self.originals.items() if o.present or not present]

    def audit(self) -> list[Verdict]:
        newest = {tag: self.kms.current_version(tag) for tag in (self.stack.key_tag, self.convergent_tag)}
        originals = list(self.originals.values())
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda o: self._audit_one(o, newest), originals))

    def _audit_one(self, original: Original, newest: dict[str, int]) -> Verdict:
        key = original.key
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            if original.present:
                return Verdict(key, "lost", "the object is gone")
            return Verdict(key, "absent")
        if not original.present:
            return Verdict(key, "corrupted", "an object deleted by another writer was brought back")
        fingerprint = (head["ETag"], head["LastModified"], tuple(sorted(head["Metadata"].items())))
        checked = self._checked.get(key)
        if checked is not None and checked[0] == fingerprint:
            lowest = checked[1]
        else:
            problem, lowest = self._inspect(original, head)
            if problem is not None:
                return problem
            self._checked[key] = (fingerprint, lowest)
        if lowest is None or lowest >= newest[original.key_tag]:
            return Verdict(key, "current")
        return Verdict(key, "pending", f"lowest token version v{lowest}")

    def _inspect(self, original: Original, head: dict[str, Any]) -> tuple[Verdict | None, int | None]:
        key = original.key

        def corrupted(detail: str) -> tuple[Verdict, None]:
            return Verdict(key, "corrupted", detail), None

        metadata = {k: v for k, v in head["Metadata"].items() if k not in STAMPS}
        tokens = [metadata.pop(name, "") for name in original.token_metadata]
        if metadata != original.metadata:
            return corrupted("user metadata changed")
        if _headers(head) != original.headers:
            return corrupted("headers changed")
        response = self.s3.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"].read()
        if original.tags or response.get("TagCount"):
            tag_set = self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
            if tuple(sorted((t["Key"], t["Value"]) for t in tag_set)) != original.tags:
                return corrupted("tags changed")
        if original.token_metadata:
            if body != original.parts[0]:
                return corrupted("the envelope's body changed")
        else:
            found, malformed = scan(body)
            if malformed:
                return corrupted(f"{len(malformed)} malformed token(s) in the body")
            if _parts(body, found) != original.parts:
                return corrupted("bytes around the tokens changed")
            if original.kind == "json" and not _parses(body):
                return corrupted("the JSON document no longer parses")
            if len(found) != len(original.escaped) or any(
                _escaping_changed(body[t.start : t.end], escaped)
                for t, escaped in zip(found, original.escaped, strict=True)
            ):
                return corrupted("a token's JSON escaping changed")
            tokens = [t.text for t in found]
        plaintexts = []
        for token in tokens:
            try:
                plaintexts.append(self.kms.decrypt(original.key_tag, token, original.context))
            except (EmulatorError, ValueError):
                return Verdict(key, "lost", "a token no longer decrypts"), None
        if tuple(plaintexts) != original.plaintexts:
            return corrupted("a token decrypts to different data")
        return None, min((token_version(t) for t in tokens), default=None)


def _parts(body: bytes, found: Sequence[Any]) -> tuple[bytes, ...]:
    parts, position = [], 0
    for token in found:
        parts.append(body[position : token.start])
        position = token.end
    parts.append(body[position:])
    return tuple(parts)


def _escaping_changed(raw: bytes, escaped: bool) -> bool:
    """A token written with escaped slashes where the original had none. (The reverse is valid JSON
    and happens legitimately: a token without any slash gives no hint, so its successor is written
    plain; the JSON documents are parsed separately.)"""
    return not escaped and b"\\/" in raw


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _headers(head: dict[str, Any]) -> dict[str, Any]:
    return {name: head.get(name) for name in COMPARED_HEADERS if head.get(name) not in (None, "")}


# --- the report ------------------------------------------------------------------------------------
@dataclass
class SoakReport:
    seed: int
    rounds: int
    objects: Counter[str] = field(default_factory=Counter)
    key_version: int = 1
    invocations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # "<class> <reason code>" of failed tasks/messages
    failure_examples: dict[str, str] = field(default_factory=dict)  # reason code -> the first reason seen
    kms_requests: Counter[str] = field(default_factory=Counter)
    final: Counter[str] = field(default_factory=Counter)
    problems: dict[str, str] = field(default_factory=dict)  # key -> "lost: …" / "corrupted: …" (first seen)
    leaks: list[str] = field(default_factory=list)
    checks: int = 0
    multipart_left: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(1 for p in self.problems.values() if p.startswith("lost"))

    @property
    def corrupted(self) -> int:
        return sum(1 for p in self.problems.values() if p.startswith("corrupted"))

    @property
    def stranded(self) -> int:
        """Objects still under an old key version after the round converged."""
        return self.final["pending"]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.corrupted == 0 and self.stranded == 0 and not self.leaks

    def render(self) -> str:
        def line(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "none"

        faults_by_area: dict[str, Counter[str]] = {}
        for name, count in self.faults.items():
            area, _, kind = name.partition(":")
            faults_by_area.setdefault(area, Counter())[kind] += count
        lines = [
            f"rewrap soak — seed {self.seed}, {sum(self.objects.values())} objects, {self.rounds} rounds "
            f"(key rotated to v{self.key_version}), {self.seconds:.0f} s",
            f"objects: {line(self.objects)}",
            f"invocations: {line(self.invocations)}",
            f"KMS requests: {line(self.kms_requests)}",
            f"faults injected: {sum(self.faults.values())}",
            *(f"  {area}: {line(kinds)}" for area, kinds in sorted(faults_by_area.items())),
            f"retries: {line(self.retries)}",
            f"failures reported: {line(self.failures)}",
            f"checks: {self.checks} (every object after every run)",
            f"final: {line(self.final)}; multipart uploads left by crashes: {self.multipart_left}",
            f"lost: {self.lost}, corrupted: {self.corrupted}, stranded: {self.stranded}, "
            f"leaks in output: {len(self.leaks)}",
            *(f"  {key!r}: {problem}" for key, problem in list(self.problems.items())[:20]),
            *(f"  leak: {leak}" for leak in self.leaks),
            "OK" if self.ok else "FAILED",
        ]
        return "\n".join(lines)


# --- the soak ---------------------------------------------------------------------------------------
@dataclass
class SoakConfig:
    objects: int = 400
    rounds: int = 4
    seed: int = 1
    large_objects: int | None = None  # default: one per 60 objects, at least two
    tasks_per_invocation: int = 4  # S3 Batch Operations tasks per invocation
    capture_output: bool = False  # keep the handlers' logs and metrics and search them for leaks
    progress: Callable[[str], None] | None = None  # told about every phase
    environment: dict[str, str] = field(default_factory=dict)  # on top of SOAK_ENVIRONMENT
    faults: tuple[str, ...] = FAULT_KINDS  # the kinds the rounds draw from


class Soak:
    """Use as a context manager around a provisioned stack: sets the soak's environment, seeds the
    bucket, and restores everything on exit."""

    def __init__(self, stack: LocalStack, config: SoakConfig) -> None:
        self.stack = stack
        self.config = config
        self.rng = random.Random(config.seed)
        self.sqs = stack.client("sqs")
        self.secrets = stack.client("secretsmanager")
        self.report = SoakReport(config.seed, config.rounds)
        self.transcript = io.StringIO()
        self.outputs: list[str] = []  # reprs of every response and exception the handler produced
        self.responses: list[dict[str, Any]] = []  # every response, in order
        self.kms_headers: list[dict[str, str]] = []  # every KMS request's headers
        self.credentials: list[dict[str, str]] = []  # every NCP secret value in use during the run
        self._good_secret: dict[str, str] = {}
        self._invocation_faults: list[str] = []
        self._failed_tasks: list[str] = []
        self._tasks = 0
        self._exit = contextlib.ExitStack()
        self._kms_hooked: set[int] = set()
        self.invoking = False  # a handler invocation is running (see ``during_invocations``)
        self.corpus: Corpus
        self.s3_faults: S3Faults

    # --- setup -------------------------------------------------------------------------------------
    def __enter__(self) -> Soak:
        from aws_lambda_powertools.utilities import parameters

        self._exit.enter_context(
            environment({**self.stack.environment(), **SOAK_ENVIRONMENT, **self.config.environment})
        )
        self._exit.callback(reset_runtime)
        if self.config.capture_output:
            self._exit.enter_context(_captured(self.transcript))
        parameters.clear_caches()
        reset_runtime()
        value = self.secrets.get_secret_value(SecretId=self.stack.secret_id)["SecretString"]
        self._good_secret = json.loads(value)
        self.credentials.append(dict(self._good_secret))
        self.corpus = Corpus(self.stack, self.stack.kms.create_key(convergent=True), self.rng)
        self.s3_faults = S3Faults(self.corpus)
        large = self.config.large_objects
        large = max(2, self.config.objects // 60) if large is None else large
        self.corpus.seed(self.config.objects, large)
        self.report.objects.update(o.kind for o in self.corpus.originals.values())
        return self

    def __exit__(self, *exc: object) -> None:
        kms = self.stack.kms
        kms.clear_faults()
        kms.set_latency(0)
        if self.credentials:  # the stack's own secret and access key, as they were
            first = self.credentials[0]
            kms.add_credentials(first["accessKey"], first["secretKey"], first.get("apiKey"))
            self.put_secret(first)
        self._exit.close()

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> SoakReport:
        started = time.perf_counter()
        emulator_before = self.stack.kms.stats.snapshot()
        for round_no in range(self.config.rounds):
            self.run_round(round_no)
        emulator_after = self.stack.kms.stats.snapshot()
        for action, count in emulator_after["requests"].items():
            self.report.kms_requests[action] += count - emulator_before["requests"].get(action, 0)
        self.report.retries["kms auth refreshes"] += emulator_after["auth_failures"] - emulator_before["auth_failures"]
        self.report.faults.update(self.s3_faults.injected)
        self.report.retries["s3 (botocore)"] = self.s3_faults.retries
        self.report.key_version = self.stack.kms.current_version(self.stack.key_tag)
        uploads = self.corpus.s3.list_multipart_uploads(Bucket=self.stack.bucket).get("Uploads", [])
        self.report.multipart_left = len(uploads)
        if self.config.capture_output:
            self.report.leaks = self.find_leaks(self.transcript.getvalue() + "\n".join(self.outputs))
        self.report.seconds = time.perf_counter() - started
        return self.report

    def rotate_keys(self) -> None:
        self.stack.kms.rotate(self.stack.key_tag)
        self.stack.kms.rotate(self.corpus.convergent_tag)

    def run_round(self, round_no: int) -> None:
        self.rotate_keys()
        keys = sorted(self.corpus.keys())  # seeding order varies with threads; slices must not
        phases = self._phases(round_no)
        for index, (faults, slice_) in enumerate(zip(phases, self._slices(keys, phases), strict=True)):
            route = "sqs" if (index + round_no) % 2 == 0 else "batch-ops"
            self.run_phase(faults, slice_, route)
        self.converge()

    def _phases(self, round_no: int) -> list[list[str]]:
        """Even rounds: each kind alone. Odd rounds: random mixes, at most one secret fault each."""
        if round_no % 2 == 0:
            return [[kind] for kind in self.config.faults]
        others = [k for k in self.config.faults if not k.startswith("secret:")]
        secrets = [k for k in self.config.faults if k.startswith("secret:")]
        phases = []
        for _ in range(max(4, len(self.config.faults) // 3)):
            kinds = self.rng.sample(others, min(len(others), self.rng.randint(3, 6)))
            if secrets and self.rng.random() < 0.5:
                kinds.append(self.rng.choice(secrets))
            phases.append(kinds)
        return phases

    def _slices(self, keys: list[str], phases: list[list[str]]) -> list[list[str]]:
        """Disjoint slices with a mix of kinds each; phases that need a large object get one first."""
        originals = self.corpus.originals
        large = [k for k in keys if originals[k].kind == "large"]
        by_kind: dict[str, list[str]] = {}
        for key in keys:
            if originals[key].kind != "large":
                by_kind.setdefault(originals[key].kind, []).append(key)
        for bucket in by_kind.values():
            self.rng.shuffle(bucket)
        interleaved = [k for group in zip_longest_lists(list(by_kind.values())) for k in group]
        slices: list[list[str]] = [[] for _ in phases]
        wanting = sorted(
            range(len(phases)),
            key=lambda i: min((_WANTS_LARGE.index(k) for k in phases[i] if k in _WANTS_LARGE), default=99),
        )
        for index, key in zip(wanting, large, strict=False):
            slices[index].append(key)
        for index, leftover in enumerate(large[len(phases) :]):
            slices[index % len(phases)].append(leftover)
        bounds = [round(i * len(interleaved) / len(phases)) for i in range(len(phases) + 1)]
        for index in range(len(phases)):
            slices[index].extend(interleaved[bounds[index] : bounds[index + 1]])
        return slices

    def run_phase(self, faults: Sequence[str], keys: list[str], route: str) -> None:
        kms = self.stack.kms
        started = time.perf_counter()
        before = kms.stats.snapshot()["faults_injected"]
        restore_secret = False
        for fault in faults:
            restore_secret |= self._arm(fault)
        try:
            if route == "sqs":
                self.deliver_sqs(keys)
            else:
                self.deliver_batch_operations(keys)
        finally:
            kms.clear_faults()
            kms.set_latency(0)
            self.s3_faults.clear()
            self._invocation_faults.clear()
            if restore_secret:  # the cause of the permanent failures is fixed; converge() re-runs them
                self.put_secret(self._good_secret)
        after = kms.stats.snapshot()["faults_injected"]
        for kind, count in after.items():
            if count - before.get(kind, 0):
                self.report.faults[f"kms:{kind}"] += count - before.get(kind, 0)
        self.check()
        if self.config.progress is not None:
            seconds = time.perf_counter() - started
            self.config.progress(f"  {'+'.join(faults):<60} {route:<9} {len(keys):>4} objects {seconds:5.1f} s")

    def _arm(self, fault: str) -> bool:
        """Queue ``fault``; True when the secret must be restored after the phase."""
        kms, tag, faults = self.stack.kms, self.stack.key_tag, self.s3_faults
        rng = self.rng
        if fault == "kms:throttle":
            kms.inject("throttle", times=rng.randint(2, 5), action=None)
        elif fault == "kms:throttle-retry-after":
            kms.inject("throttle", times=rng.randint(2, 4), retry_after=0.05)
        elif fault == "kms:server-error":
            for status in (500, 502, 503, 504):
                kms.inject("server-error", times=1, action=None, status=status)
        elif fault == "kms:timeout":
            kms.inject("timeout", times=2, seconds=2.0)
        elif fault in ("kms:reset", "kms:non-json", "kms:short-reply", "kms:extra-item", "kms:bad-pattern"):
            kms.inject(fault.split(":")[1], times=rng.randint(2, 4))
        elif fault == "kms:lower-version":
            kms.inject("lower-version", times=2, key_tag=tag)
        elif fault == "kms:corrupt":  # only on re-encrypt: see the reply's closing notes
            kms.inject("corrupt", times=rng.randint(1, 2), action="re-encrypt")
        elif fault == "kms:verify-decrypt":  # faults on the verification's decrypt calls
            kms.inject("server-error", times=1, action="decrypt", status=503)
            kms.inject("short-reply", times=1, action="decrypt")
        elif fault == "s3:slowdown":
            ops = READ_OPS | WRITE_OPS | {"UploadPart", "UploadPartCopy", "CreateMultipartUpload"}
            faults.add("slowdown", ops, rng.randint(3, 8))
        elif fault in ("s3:overwrite", "s3:delete"):
            for op in WRITE_OPS:
                faults.add(fault.split(":")[1], frozenset({op}), 1)
        elif fault == "s3:precondition":
            faults.add("precondition", WRITE_OPS, 2, status=412, code="PreconditionFailed")
        elif fault == "s3:part-failure":
            # one part failing all of botocore's 4 attempts (max_attempts=3 retries), and a part copy once
            faults.add("part-failure", frozenset({"UploadPart"}), 4, status=503, code="SlowDown")
            faults.add("part-failure", frozenset({"UploadPartCopy"}), 1, status=500, code="InternalError")
        elif fault == "invocation:crash":
            self._invocation_faults.append("crash")
        elif fault == "invocation:out-of-time":
            self._invocation_faults.append("out-of-time")
        elif fault == "secret:rotated":
            self.rotate_secret()
        elif fault == "secret:unreachable":
            self._invocation_faults.append("secrets-unreachable")
        elif fault == "secret:malformed":
            bad: Any = "{not json" if rng.random() < 0.5 else {"accessKey": self._good_secret["accessKey"]}
            self.put_secret(bad)
            self.cold_start()  # a new container reads the broken value
            self.report.faults["secret:malformed"] += 1
            return True
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return False

    # --- secrets -----------------------------------------------------------------------------------
    def put_secret(self, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.secrets.put_secret_value(SecretId=self.stack.secret_id, SecretString=text)

    def rotate_secret(self) -> None:
        """A new access key goes into the secret and the emulator; the old one stops working at once."""
        old = self._good_secret
        new = {
            "accessKey": f"soak-ak-{self.rng.getrandbits(64):016x}",
            "secretKey": f"soak-sk-{self.rng.getrandbits(128):032x}",
            "apiKey": f"soak-api-{self.rng.getrandbits(64):016x}",
        }
        self.put_secret(new)
        self.stack.kms.add_credentials(new["accessKey"], new["secretKey"], new["apiKey"])
        self.stack.kms.remove_credentials(old["accessKey"])
        self._good_secret = new
        self.credentials.append(dict(new))
        self.report.faults["secret:rotated"] += 1

    def cold_start(self) -> None:
        from aws_lambda_powertools.utilities import parameters

        reset_runtime()
        parameters.clear_caches()
        self.report.invocations["cold starts"] += 1

    # --- delivery ----------------------------------------------------------------------------------
    def deliver_sqs(self, keys: list[str]) -> None:
        bodies = []
        position = 0
        while position < len(keys):
            shape = self.rng.choice(("s3", "sns", "eventbridge", "request"))
            count = 1 if shape == "eventbridge" else self.rng.randint(1, 4)
            bodies.append(self._message(shape, keys[position : position + count]))
            position += count
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
            self.sqs.send_message_batch(QueueUrl=self.stack.queue_url, Entries=entries)
        self.report.invocations["messages sent"] += len(bodies)
        self.drain()

    def drain(self) -> None:
        counts = drain_queue(self.sqs, self.stack.queue_url, self._sqs_handler, max_rounds=500)
        self.report.retries["sqs redeliveries"] += counts["failed"]

    def _message(self, shape: str, keys: list[str]) -> str:
        bucket = self.stack.bucket
        if shape == "s3":
            return json.dumps(s3_notification(bucket, keys))
        if shape == "sns":
            return json.dumps(
                {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": "arn:aws:sns:ap-northeast-2:123456789012:rewrap-s3-events",
                    "Subject": "Amazon S3 Notification",
                    "Message": json.dumps(s3_notification(bucket, keys)),
                }
            )
        if shape == "eventbridge":
            event = load_event("eventbridge-s3.json")
            event["id"] = str(uuid.uuid4())
            event["detail"]["bucket"]["name"] = bucket
            event["detail"]["object"]["key"] = keys[0]
            return json.dumps(event)
        return json.dumps({"bucket": bucket, "keys": keys})

    def _sqs_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = self.invoke(event, "sqs")
        if response is None:  # a crashed invocation: Lambda returns the whole batch to the queue
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}
        return response

    def deliver_batch_operations(self, keys: list[str], attempts: int = 3) -> None:
        """Tasks in invocations of a few; TemporaryFailure is retried (as S3 Batch Operations does),
        what still fails is kept for a job on the completion report's failed tasks."""
        size = self.config.tasks_per_invocation
        for start in range(0, len(keys), size):
            todo = keys[start : start + size]
            for attempt in range(attempts):
                todo = self.invoke_tasks(todo)
                if not todo:
                    break
                if attempt + 1 < attempts:
                    self.report.retries["batch-ops task retries"] += len(todo)
            self._failed_tasks.extend(todo)

    def invoke_tasks(self, keys: list[str]) -> list[str]:
        """Run one invocation; the keys of tasks to retry (TemporaryFailure, or all when it crashed).
        PermanentFailure tasks are kept for a re-run once the cause is fixed (``converge``)."""
        event = load_event("batch-ops-2.0.json")
        event["invocationId"] = str(uuid.uuid4())
        template = event["tasks"][0]
        by_task = {}
        event["tasks"] = []
        for key in keys:
            self._tasks += 1
            task_id = f"task-{self._tasks}"
            by_task[task_id] = key
            event["tasks"].append(
                dict(template, taskId=task_id, s3Bucket=self.stack.bucket, s3Key=quote_plus(key, safe="/"))
                | {"s3VersionId": None}
            )
        response = self.invoke(event, "batch-ops")
        if response is None:
            return keys
        retry = []
        for result in response["results"]:
            if result["resultCode"] == "Succeeded":
                continue
            key, code = by_task[result["taskId"]], result["resultString"].split(":", 1)[0]
            self.report.failures[f"{result['resultCode']} {code}"] += 1
            self.report.failure_examples.setdefault(code, result["resultString"])
            (retry if result["resultCode"] == "TemporaryFailure" else self._failed_tasks).append(key)
        return retry

    # --- one invocation ------------------------------------------------------------------------------
    def queue_invocation_fault(self, kind: str) -> None:
        """``crash``, ``out-of-time`` or ``secrets-unreachable`` for the next invocation without one."""
        if kind not in ("crash", "out-of-time", "secrets-unreachable"):
            raise ValueError(f"unknown invocation fault {kind!r}")
        self._invocation_faults.append(kind)

    def invoke(self, event: dict[str, Any], route: str) -> dict[str, Any] | None:
        """The real rotate handler, with this invocation's faults; None when it crashed."""
        from rewrap.handlers import rotate as lambda_handler

        fault = self._invocation_faults.pop(0) if self._invocation_faults else None
        context = LambdaContext()
        overrides: dict[str, str] = {}
        if fault == "out-of-time":  # 1.5-3.5 s left after the reserve, while KMS answers slowly
            context = LambdaContext(timeout_seconds=self.rng.uniform(6.5, 8.5))
            self.stack.kms.set_latency(0.4, 1.0)
            self.report.faults["invocation:out-of-time"] += 1
        elif fault == "secrets-unreachable":
            overrides["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = f"http://127.0.0.1:{_closed_port()}"
            context = LambdaContext(timeout_seconds=9.0)  # bounded: every fetch fails after retries
            self.cold_start()
            self.report.faults["secret:unreachable"] += 1
        elif fault == "crash":
            self.s3_faults.arm_crash(self.rng.randint(1, 8))  # stays armed into later invocations
        self.report.invocations[route] += 1
        crashed = False
        with environment(overrides):
            runtime = get_runtime()
            self._hook(runtime)
            kms_before = runtime.kms.stats.snapshot()
            self.invoking = True
            try:
                response = lambda_handler(event, context)
                self.outputs.append(repr(response))
                self.responses.append(response)
            except SimulatedCrash as crash:
                self.outputs.append(repr(crash))
                response, crashed = None, True
            finally:
                self.invoking = False
                self.report.retries["kms (client)"] += runtime.kms.stats.retries - kms_before["retries"]
                self.s3_faults.revive()
                self.stack.kms.set_latency(0)
        if crashed:
            self.report.invocations["crashed"] += 1
            self.cold_start()  # the sandbox is gone
        if fault == "secrets-unreachable":
            self.cold_start()  # Secrets Manager is back for the next container
        return response

    def _hook(self, runtime: Runtime) -> None:
        self.s3_faults.attach(runtime.s3)
        if id(runtime.kms.http) not in self._kms_hooked:
            self._kms_hooked.add(id(runtime.kms.http))
            runtime.kms.http.event_hooks["request"].append(self._kms_request)

    def _kms_request(self, request: Any) -> None:
        self.kms_headers.append({name.lower(): value for name, value in request.headers.items()})

    # --- convergence and checks ----------------------------------------------------------------------
    def converge(self, max_passes: int = 8) -> None:
        """Re-run what failed (the causes are fixed by now) until nothing is left to re-run."""
        for _ in range(max_passes):
            parked = self._redrive()
            tasks, self._failed_tasks = self._failed_tasks, []
            if not parked and not tasks:
                break
            self.report.retries["dlq redrives"] += parked
            self.report.retries["batch-ops re-run tasks"] += len(tasks)
            self.drain()
            if tasks:
                self.deliver_batch_operations(tasks)
        verdicts = self.check()
        self.report.final = Counter(v.state for v in verdicts)

    def _redrive(self) -> int:
        """Move the dead-letter queue's messages back to the rotate queue; how many moved."""
        moved = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.stack.dead_letter_queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                # Parked by rewrap with its reason, or moved by the queue's redrive policy.
                reason = message.get("MessageAttributes", {}).get("rewrap-failure", {}).get("StringValue")
                code = reason.split(":", 1)[0] if reason else "maxReceiveCount"
                self.report.failures[f"parked {code}"] += 1
                self.report.failure_examples.setdefault(code, reason or "moved by the queue's redrive policy")
                self.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=message["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.stack.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                moved += 1

    def check(self) -> list[Verdict]:
        verdicts = self.corpus.audit()
        self.report.checks += 1
        for verdict in verdicts:
            if verdict.state in ("lost", "corrupted"):
                self.report.problems.setdefault(verdict.key, f"{verdict.state}: {verdict.detail}")
        return verdicts

    # --- leaks -------------------------------------------------------------------------------------
    def during_invocations(self) -> logging.Filter:
        """A logging filter passing only records emitted while the handler runs (not the harness's
        own set-up calls, such as writing a new secret value)."""
        soak = self

        class _During(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                return soak.invoking

        return _During()

    def sensitive(self) -> dict[str, set[str]]:
        """What must never appear in any output, by kind (the values themselves are never printed)."""
        credentials = {v for c in self.credentials for v in c.values() if v}
        signatures = {v for h in self.kms_headers for n, v in h.items() if n.startswith("x-ncp-apigw-signature")}
        return {"credential": credentials, "signature": signatures, "plaintext": set(self.corpus.plaintexts)}

    def find_leaks(self, text: str) -> list[str]:
        """Which kinds of sensitive value occur in ``text`` (and how often), never the values."""
        sensitive = self.sensitive()
        leaks = []
        credentials = sum(1 for value in sensitive["credential"] if value in text)
        if credentials:
            leaks.append(f"{credentials} credential value(s)")
        signatures = len(set(_SIGNATURE_RE.findall(text)) & sensitive["signature"])
        if signatures:
            leaks.append(f"{signatures} request signature(s)")
        plaintexts = len(_PLAINTEXT_RE.findall(text))
        if plaintexts:
            leaks.append(f"{plaintexts} plaintext(s) or their base64")
        return leaks


def zip_longest_lists(groups: list[list[str]]) -> Iterator[list[str]]:
    """Round-robin over groups: one of each, then the next of each, …"""
    for index in range(max((len(g) for g in groups), default=0)):
        yield [g[index] for g in groups if index < len(g)]


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _captured(buffer: io.StringIO) -> Iterator[None]:
    """Send the handlers' log lines (Powertools' handler) and metrics (printed EMF) to ``buffer``."""
    from rewrap.observability import logger

    handler = logger.registered_handler
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def _progress(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)  # stdout itself is captured during the run


def run_soak(stack: LocalStack, config: SoakConfig) -> SoakReport:
    with Soak(stack, config) as soak:
        return soak.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=400, help="objects in the bucket (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="key rotations, each with its fault phases (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="makes the objects and the fault plan reproducible")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", "No application metrics to publish")  # a crashed invocation has none
    if args.objects < len(FAULT_KINDS) or args.rounds < 1:
        parser.error(f"need at least {len(FAULT_KINDS)} objects and one round")
    # make soak-localstack runs it against LocalStack (which enforces S3's conditions itself)
    endpoint = os.environ.get("REWRAP_TEST_S3_ENDPOINT", "")
    backend = "LocalStack" if endpoint else "moto"
    print(f"rewrap soak: {args.objects} objects, {args.rounds} rounds, seed {args.seed}", end=" ")
    print(f"({backend} + emulator on loopback)")
    config = SoakConfig(
        objects=args.objects, rounds=args.rounds, seed=args.seed, capture_output=True, progress=_progress
    )
    if endpoint:
        kms = KmsEmulator(seed=args.seed).start()
        try:
            stack = provision(endpoint, kms, bucket=f"rewrap-soak-{uuid.uuid4().hex[:8]}", backend="localstack")
            report = run_soak(stack, config)
        finally:
            kms.stop()
    else:
        with local_stack(bucket="rewrap-soak", seed=args.seed) as stack:
            report = run_soak(stack, config)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
