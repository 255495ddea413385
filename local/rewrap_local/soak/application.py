"""The application next door: another writer of the soak's objects that keeps their metadata, as SDK "update"
helpers do. It reads an object, changes it and writes it back with every user metadata value it read, rewrap's
stamps included, and its content headers and tags.

* ``app:rewrite`` (a racer): just before one of rewrap's conditional writes, a new body (one letter's case
  swapped outside the tokens, an envelope's sealed byte flipped, a newline where there is no letter);
* ``app:metadata`` (a racer): just before rewrap's self-copy of an envelope, its GET of a body after a HEAD, or
  a HEAD, a metadata-only update: the object copied onto itself with one more metadata value (the ETag stays).
  It waits for the second after the object's LastModified, as S3 keeps that time in whole seconds. Never on
  the PutObject or multipart completion that ends a rewrite: there S3 checks only the ETag, a window the object
  contract states;
* ``write_back`` (once a round, after rewrap rotated the objects): bodies written back with the tokens the
  application cached before the key rotated, older but of the same length, under the stamps rewrap left; S3 then
  notifies rewrap, as it would.

Every write is remembered as the object's new original, so the audit checks rewrap kept it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from rewrap.core.tokens import scan

from .corpus import Corpus, Original

RACERS = ("app:rewrite", "app:metadata")
# Kinds whose bodies hold tokens the application can cache and write back (large ones are not cached).
CACHED_KINDS = ("bare", "json", "ndjson", "env", "convergent")
HEADERS = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl")
LETTER_SEARCH_BYTES = 64 * 1024  # where a letter to change is looked for


class Application:
    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        self.corpus = corpus
        self.s3 = corpus.stack.client("s3")
        self.bucket = corpus.bucket
        self.rng = random.Random(rng.getrandbits(64))  # its own: racers run in the engine's threads
        self._lock = threading.Lock()
        self.cached: dict[str, bytes] = {}
        self.written: Counter[str] = Counter()  # what it wrote, by fault kind
        self._revision = 0

    def cache(self) -> None:
        """Read the bodies it will write back later (before the first rotation: tokens at v1)."""
        for key, original in list(self.corpus.originals.items()):
            if original.kind in CACHED_KINDS:
                self.cached[key] = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    # --- racing rewrap (called from the S3 hooks, in the engine's threads) -------------------------------
    def wants(self, kind: str, key: str) -> bool:
        original = self.corpus.originals.get(key)
        if original is None or not original.present:
            return False
        # a large object's multipart completion checks the ETag only: the contract leaves that window open
        return kind == "app:rewrite" or original.kind != "large"

    def race(self, kind: str, key: str) -> None:
        if kind == "app:rewrite":
            self.rewrite(key)
        else:
            self.update_metadata(key)

    # --- writes --------------------------------------------------------------------------------------------
    def rewrite(self, key: str, body: bytes | None = None) -> bool:
        """Read-modify-write keeping metadata, headers and tags: ``body``, or the body read with one change.
        False when there was nothing to change."""
        original = self.corpus.originals[key]
        response = self.s3.get_object(Bucket=self.bucket, Key=key)
        current = response["Body"].read()
        new = self._edited(current, original) if body is None else body
        if new == current:
            return False
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=new, Metadata=response["Metadata"], **self._kept(key, response)
        )
        self._remember(original, new, "app:rewrite" if body is None else "app:write-back")
        return True

    def update_metadata(self, key: str) -> None:
        """A metadata-only update: the object copied onto itself with its metadata and one more value."""
        original = self.corpus.originals[key]
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        _after_the_second_of(head["LastModified"].timestamp())
        with self._lock:
            self._revision += 1
            revision = self._revision
        self.s3.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="REPLACE",
            TaggingDirective="COPY",
            Metadata={**head["Metadata"], "app-revision": str(revision)},
            **self._headers(head),
        )
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self._remember(original, body, "app:metadata")

    def write_back(self, count: int) -> list[str]:
        """Up to ``count`` objects written back with the tokens cached before the key rotated; the keys written."""
        # not where the racing writer of ``s3:overwrite`` replaced the object with one of its own
        originals = self.corpus.originals
        candidates = sorted(k for k in self.cached if originals[k].present and originals[k].kind in CACHED_KINDS)
        written = []
        for key in self.rng.sample(candidates, min(count, len(candidates))):
            if self.rewrite(key, self.cached[key]):
                written.append(key)
        return written

    # --- helpers -------------------------------------------------------------------------------------------
    def _edited(self, body: bytes, original: Original) -> bytes:
        if original.token_metadata:  # an envelope: its body is sealed data, one byte of it flipped
            if not body:
                return b"\0"
            with self._lock:
                i = self.rng.randrange(len(body))
            return body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        found = scan(body[:LETTER_SEARCH_BYTES])[0]
        spans, start = [], 0
        for token in found:
            spans.append((start, token.start))
            start = token.end
        spans.append((start, min(len(body), LETTER_SEARCH_BYTES)))
        letters = [i for s, e in spans for i in range(s, e) if body[i : i + 1].isalpha()]
        if not letters:
            return body[:-1] if body.endswith(b"\n") else body + b"\n"
        with self._lock:
            i = self.rng.choice(letters)
        return body[:i] + body[i : i + 1].swapcase() + body[i + 1 :]

    def _kept(self, key: str, response: dict[str, Any]) -> dict[str, Any]:
        """The content headers, storage class, encryption and tags a rewrite carries along."""
        tags = self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
        kept = self._headers(response)
        if tags:
            kept["Tagging"] = urlencode([(t["Key"], t["Value"]) for t in tags])
        return kept

    @staticmethod
    def _headers(response: dict[str, Any]) -> dict[str, Any]:
        kept = {name: response[name] for name in HEADERS if response.get(name)}
        if response.get("StorageClass") not in (None, "STANDARD"):
            kept["StorageClass"] = response["StorageClass"]
        if response.get("ServerSideEncryption"):
            kept["ServerSideEncryption"] = response["ServerSideEncryption"]
        return kept

    def _remember(self, original: Original, body: bytes, kind: str) -> None:
        self.corpus.remember(
            original.key, original.kind, original.key_tag, original.context, body, original.token_metadata
        )
        with self._lock:
            self.written[kind] += 1


def _after_the_second_of(timestamp: float) -> None:
    """Wait until the clock is past the whole second of ``timestamp``."""
    delay = int(timestamp) + 1 - time.time()
    if delay > 0:
        time.sleep(delay)
