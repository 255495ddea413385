"""Body forms: how a body holds its text, so tokens are found wherever a bucket hides them.

A body is plain bytes (any ASCII-compatible text, UTF-8 with or without a BOM), UTF-16 or UTF-32
with a byte-order mark, and either of those gzip-compressed (``Content-Encoding: gzip`` or the gzip
magic bytes; multi-member files included). Such bodies are decoded to bytes the scanner reads, and
the spliced result is encoded back the same way: the BOM kept, gzip recompressed, every other byte of
the decoded content unchanged. Decoding and encoding stream chunk by chunk, in bounded memory.

Anything else that could hold tokens unseen (archives, other compressions, NUL-interleaved text
without a BOM) raises ``ObjectOpaqueError``; a body that claims a form but breaks it raises
``BodyDecodeError`` with the byte offset.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from rewrap.errors import BodyDecodeError, ObjectOpaqueError

GZIP_MAGIC = b"\x1f\x8b"
# Enough of a body's start to tell its form.
SNIFF_BYTES = 4096
# Decompressed output per step, so a small compressed chunk never expands unbounded in memory.
_INFLATE_STEP = 1024 * 1024

_OPAQUE_MAGIC = (
    (b"PK\x03\x04", "zip archive"),
    (b"PK\x05\x06", "zip archive"),
    (b"PK\x07\x08", "zip archive"),
    (b"\x28\xb5\x2f\xfd", "zstd compression"),
    (b"BZh", "bzip2 compression"),
    (b"\xfd7zXZ\x00", "xz compression"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"\x04\x22\x4d\x18", "lz4 compression"),
    (b"Rar!\x1a\x07", "rar archive"),
    (GZIP_MAGIC, "gzip inside gzip"),
)
# Longest first: the UTF-32LE mark starts with the UTF-16LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_PASS_THROUGH_ENCODINGS = {"", "identity"}
_GZIP_ENCODINGS = {"gzip", "x-gzip"}


@dataclass(frozen=True)
class Form:
    gzip: bool = False
    codec: str | None = None  # utf-16-le, utf-16-be, utf-32-le, utf-32-be
    bom: bytes = b""

    @property
    def plain(self) -> bool:
        return not self.gzip and self.codec is None

    def __str__(self) -> str:
        parts = (["gzip"] if self.gzip else []) + ([self.codec.upper()] if self.codec else [])
        return " + ".join(parts) or "plain"


def _declared_gzip(content_encoding: str | None) -> bool:
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",")]
    encodings = [e for e in encodings if e not in _PASS_THROUGH_ENCODINGS]
    if not encodings:
        return False
    if len(encodings) == 1 and encodings[0] in _GZIP_ENCODINGS:
        return True
    raise ObjectOpaqueError(f"Content-Encoding {content_encoding!r} cannot be read")


def _text_form(start: bytes, *, inside_gzip: bool) -> tuple[str | None, bytes]:
    """The codec and BOM of decoded text starting with ``start``; raises for opaque content."""
    for magic, what in _OPAQUE_MAGIC:
        if start.startswith(magic) and (inside_gzip or magic != GZIP_MAGIC):
            raise ObjectOpaqueError(what)
    # Bytes that only look like a BOM (binary with plain tokens after FF FE) stay plain: a wide text's
    # own tokens never show as plain ASCII.
    for bom, codec in _BOMS:
        if start.startswith(bom) and b"ncpkms" not in start:
            return codec, bom
    if _nul_interleaved(start):
        raise ObjectOpaqueError("NUL-interleaved text without a byte-order mark (UTF-16/32?)")
    return None, b""


def _nul_interleaved(sample: bytes) -> bool:
    """Text in a wide encoding without a BOM: many NULs, the other bytes nearly all printable ASCII."""
    if len(sample) < 8:
        return False
    nuls = sample.count(0)
    if nuls * 10 < len(sample) * 3:
        return False
    others = [b for b in sample if b]
    printable = sum(1 for b in others if 0x20 <= b < 0x7F or b in (9, 10, 13))
    return bool(others) and printable * 10 >= len(others) * 9


def open_text(content_encoding: str | None, chunks: Iterable[bytes]) -> tuple[Form, Iterator[bytes]]:
    """The body's form and its decoded content as chunks (the chunks themselves for plain bodies)."""
    declared = _declared_gzip(content_encoding)
    raw_start, raw = _peek(iter(chunks))
    gzip = declared or raw_start.startswith(GZIP_MAGIC)
    if declared and raw_start and not raw_start.startswith(GZIP_MAGIC):
        raise BodyDecodeError("Content-Encoding is gzip but the body does not start with the gzip header (byte 0)")
    decoded = _gunzip(raw) if gzip else raw
    start, decoded = _peek(decoded)
    codec, bom = _text_form(start, inside_gzip=gzip)
    form = Form(gzip, codec, bom)
    if codec is None:
        return form, decoded
    return form, _transcode_to_utf8(decoded, codec, len(bom))


class Encoder:
    """Encodes scanned (UTF-8 for wide text) content back into ``form``, chunk by chunk."""

    def __init__(self, form: Form) -> None:
        self.form = form
        self._utf8 = codecs.getincrementaldecoder("utf-8")() if form.codec else None
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, 31) if form.gzip else None
        self._pending = form.bom

    def feed(self, data: bytes) -> bytes:
        if self._utf8 is not None:
            assert self.form.codec is not None
            data = self._utf8.decode(data).encode(self.form.codec)
        data, self._pending = self._pending + data, b""
        return self._deflate.compress(data) if self._deflate is not None else data

    def finish(self) -> bytes:
        tail = self.feed(b"")
        if self._utf8 is not None:
            self._utf8.decode(b"", final=True)
        return tail + self._deflate.flush() if self._deflate is not None else tail


def encode_whole(form: Form, text: bytes) -> bytes:
    if form.plain:
        return text
    out = Encoder(form)
    return out.feed(text) + out.finish()


def _peek(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first ``SNIFF_BYTES`` (or the whole, if shorter) and the stream with them put back."""
    taken: list[bytes] = []
    size = 0
    for chunk in chunks:
        taken.append(chunk)
        size += len(chunk)
        if size >= SNIFF_BYTES:
            break
    return b"".join(taken)[:SNIFF_BYTES], chain(taken, chunks)


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Every member of a gzip stream, decompressed in bounded steps."""
    inflater = zlib.decompressobj(31)
    offset = 0  # compressed bytes before ``data``
    fed = False  # the current member has started
    for chunk in chunks:
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise BodyDecodeError(f"gzip data does not decompress near compressed byte {offset} ({exc})") from exc
            fed = True
            if out:
                yield out
            if inflater.eof:
                rest = inflater.unused_data
                offset += len(data) - len(rest)
                data, inflater, fed = rest, zlib.decompressobj(31), False
            elif inflater.unconsumed_tail:
                offset += len(data) - len(inflater.unconsumed_tail)
                data = inflater.unconsumed_tail
            else:
                offset += len(data)
                data = b""
    if fed:
        tail = inflater.flush()
        if tail:
            yield tail
        if not inflater.eof:
            raise BodyDecodeError(f"gzip data ends inside a member (compressed byte {offset})")


def _transcode_to_utf8(chunks: Iterator[bytes], codec: str, skip: int) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    offset = 0  # decoded-content bytes before ``chunk``
    for chunk in chunks:
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip, offset = chunk[cut:], skip - cut, offset + cut
        buffered = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            where = offset - buffered + exc.start
            raise BodyDecodeError(f"{codec.upper()} text is invalid at byte {where}: {exc.reason}") from exc
        offset += len(chunk)
        if text:
            yield text.encode("utf-8")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        buffered = len(exc.object)
        raise BodyDecodeError(f"{codec.upper()} text ends inside a character at byte {offset - buffered}") from exc
