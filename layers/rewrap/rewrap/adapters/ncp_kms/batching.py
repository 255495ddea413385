"""The NCP KMS client's batching: items in request-sized batches, per-item outcomes, path spellings.

Items travel in request-sized batches (:meth:`KmsBatches.batches`). A request that fails fails its
items; a v3 batch that fails some items (its ``failures`` map) fails only those, and the others, which
the atomic batch left unprocessed, are sent again. An endpoint that refuses array bodies gets one item
per request from then on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from rewrap.adapters.ncp_kms.replies import refuses_item
from rewrap.adapters.ncp_kms.transport import CredentialsSource, KmsTransport
from rewrap.core.chunks import chunk_by_size
from rewrap.deadline import Deadline
from rewrap.errors import KmsInvalidReplyError, KmsKeyDisabledError, KmsRejectedError, RewrapError
from rewrap.ncp.generations import Generation, Operation, no_limit
from rewrap.ncp.reply_errors import PATH_NOT_FOUND_CODE, ItemFailures, refuses_arrays

log = logging.getLogger(__name__)

T = TypeVar("T")


class KmsBatches(KmsTransport):
    """Per-item outcomes of batched requests, learning what this endpoint speaks as it goes."""

    def __init__(
        self,
        generation: Generation,
        endpoint: str,
        credentials: CredentialsSource,
        *,
        list_limit: int | None,
        **transport: Any,
    ) -> None:
        super().__init__(generation, endpoint, credentials, **transport)
        self.list_limit = list_limit or generation.list_limit_bytes
        # What this endpoint was found to speak (per container: the client lives as long as it does).
        self._segments: dict[str, str] = {}  # operation → the path spelling that answered
        self._single_items = False  # the endpoint refused an array body: one item per request
        # Keys found disabled: every call to them fails at once until the state is read again.
        self._disabled_keys: dict[str, tuple[float, KmsKeyDisabledError]] = {}

    def batches(self, items: Sequence[str]) -> Iterator[list[str]]:
        """Consecutive groups of ``items`` that fit one request of this generation."""
        step = 1 if self._single_items else self.generation.max_items
        for chunk in chunk_by_size(items, no_limit(self.list_limit)):
            yield from (chunk[i : i + step] for i in range(0, len(chunk), step)) if step else (chunk,)

    def _check_key_enabled(self, key_tag: str) -> None:
        known = self._disabled_keys.get(key_tag)
        if known is not None:
            if known[0] > self.clock.now():
                raise known[1]
            self._disabled_keys.pop(key_tag, None)

    def _each(
        self,
        operation: Operation,
        key_tag: str,
        items: Sequence[str],
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        """Per item, in input order: its result or the error it failed with. A request-level failure
        ends the call: the items not yet answered fail with it."""
        if not items:
            return []
        self._check_region(key_tag)
        self._check_key_enabled(key_tag)
        out: list[T | RewrapError] = []
        for chunk in self.batches(items):
            try:
                answered = self._send_chunk(operation, key_tag, chunk, context, deadline, check)
                out.extend(answered)
            except RewrapError as error:
                if len(chunk) == 1 and len(items) > 1 and refuses_item(error):
                    out.append(error)  # one item per request: this refusal is the item's own
                    continue
                out.extend([error] * (len(items) - len(out)))
                break
        return out

    def _send_chunk(
        self,
        operation: Operation,
        key_tag: str,
        chunk: list[str],
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        gen = self.generation
        if not gen.uses_batch(len(chunk)):
            body = gen.body(operation, chunk, context, batch=False)
            read = functools.partial(self._read, operation, chunk, check, False)
            try:
                return list(self._spelled_exchange(operation, key_tag, body, deadline, read))
            except KmsRejectedError as error:
                if len(chunk) == 1 or gen.batch_actions or not refuses_arrays(error):
                    raise
                if not self._single_items:
                    self._single_items = True
                    log.warning(
                        "NCP KMS at %s refused an array body (%s); sending one item per request from now on",
                        self.endpoint,
                        error,
                    )
                return [
                    outcome
                    for item in chunk
                    for outcome in self._alone(operation, key_tag, item, context, deadline, check)
                ]
        # A v3 batch is atomic: on failure it names the failed items only, the rest go again.
        results: list[T | RewrapError | None] = [None] * len(chunk)
        pending = list(range(len(chunk)))
        path_for = functools.partial(self._path, operation, key_tag, True)
        while pending:
            sent = [chunk[i] for i in pending]
            read = functools.partial(self._read, operation, sent, check, True)
            try:
                replies = self._exchange(
                    "POST",
                    path_for,
                    gen.body(operation, sent, context, batch=True),
                    deadline,
                    read,
                    batch=True,
                    key_tag=key_tag,
                )
            except ItemFailures as failures:
                failed = {pending[i]: error for i, error in failures.errors.items() if i < len(pending)}
                if not failed:
                    raise KmsInvalidReplyError("batch failures name no item that was sent") from failures
                for index, failure in failed.items():
                    results[index] = failure
                pending = [i for i in pending if i not in failed]
                continue
            except RewrapError as error:
                if len(pending) == len(chunk):
                    raise
                replies = [error] * len(pending)
            for index, reply in zip(pending, replies, strict=True):
                results[index] = reply
            pending = []
        return results  # type: ignore[return-value]  # every index was filled

    def _alone(
        self,
        operation: Operation,
        key_tag: str,
        item: str,
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        try:
            return self._send_chunk(operation, key_tag, [item], context, deadline, check)
        except RewrapError as error:
            if not refuses_item(error):
                raise
            return [error]

    def _spelled_exchange(
        self,
        operation: Operation,
        key_tag: str,
        body: dict[str, Any],
        deadline: Deadline | None,
        read: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """A one-item/array request on the path spelling this endpoint answers. NCP's pages spell some
        actions two ways; a "Not Found" (404, gateway code 300) on one is tried once with the other,
        and the one that answers is kept (and logged once)."""
        spellings = self.generation.spellings(operation.name)
        current = self._segments.get(operation.name, spellings[0])

        def send(segment: str) -> Any:
            path_for = functools.partial(self._path, operation, key_tag, False, segment=segment)
            return self._exchange("POST", path_for, body, deadline, read, key_tag=key_tag)

        try:
            return send(current)
        except KmsRejectedError as error:
            others = [s for s in spellings if s != current]
            if not others or error.http_status != 404 or error.error_code != PATH_NOT_FOUND_CODE:
                raise
            first_error = error
        try:
            result = send(others[0])
        except KmsRejectedError as error:
            if error.http_status == 404 and error.error_code == PATH_NOT_FOUND_CODE:
                raise first_error from error  # neither spelling: the key tag is unknown
            self._learn_spelling(operation, current, others[0])
            raise
        self._learn_spelling(operation, current, others[0])
        return result

    def _learn_spelling(self, operation: Operation, tried: str, answered: str) -> None:
        if self._segments.get(operation.name) != answered:
            self._segments[operation.name] = answered
            log.warning(
                "NCP KMS at %s answers %s on .../%s, not .../%s; using that spelling from now on",
                self.endpoint,
                operation.name,
                answered,
                tried,
            )

    def _read(
        self,
        operation: Operation,
        sent: list[str],
        check: Callable[[list[str], list[Any]], list[T]],
        batch: bool,
        data: dict[str, Any],
    ) -> list[T]:
        return check(sent, self.generation.items(operation, data, len(sent), batch=batch))

    def _path(self, operation: Operation, key_tag: str, batch: bool, token: bool, *, segment: str | None = None) -> str:
        return self.generation.path(
            operation.name, key_tag, signature=self.signature_version, token=token, batch=batch, segment=segment
        )
