"""The objects and their originals: seeding every kind, racing writers, and the audit of each object
against its original."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from rewrap.core.tokens import scan, token_version
from rewrap_local.emulator import EmulatorError
from rewrap_local.stack import LocalStack

from .plan import COMPARED_HEADERS, KINDS, PLAINTEXT_PREFIX, STAMPS, MiB


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
        # rewrap's stamps are its own bookkeeping, never compared (another writer may carry them along)
        metadata = {name: value for name, value in head["Metadata"].items() if name not in STAMPS}
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
