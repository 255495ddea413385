"""Every form a bucket hides tokens in, rotated in place and judged by the census: JSON \\u escapes
(Gson, .NET), %-encoding, UTF-16/32 with BOM, gzip (declared or by magic bytes, multi-member),
tokens inside metadata values, metadata and body together; then opaque, unreadable and bad input."""

from __future__ import annotations

import gzip
import io
import zipfile
from typing import Any

import pytest

import rewrap_cli.main as cli
from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime
from rewrap.core.census import Census, CensusKind
from rewrap.core.census_taker import CensusTaker
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectRef
from rewrap.core.tokens import scan
from rewrap_local.stack import LocalStack
from tests.bodies import decode_whole


def gson(token: str) -> str:
    return token.replace("=", "\\u003d")


def dotnet(token: str) -> str:
    return token.replace("+", "\\u002B").replace("=", "\\u003D").replace("/", "\\/")


def percent(token: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in ":+/=" else c for c in token)


def pct_lower(token: str) -> str:
    return "".join(f"%{ord(c):02x}" if c in ":+/=" else c for c in token)


def tokens_with_specials(runtime: Runtime, stack: LocalStack, count: int, tag: str) -> list[str]:
    """Tokens whose base64 holds "+", "/" and "=", so every escape form is exercised."""
    out: list[str] = []
    n = 0
    while len(out) < count:
        n += 1
        (token,) = runtime.kms.encrypt(stack.key_tag, [f"{tag}-{n}".encode()])
        if "+" in token and "/" in token and token.endswith("="):
            out.append(token)
    return out


def seed_corpus(stack: LocalStack, runtime: Runtime) -> dict[str, dict[str, Any]]:
    """key -> the put_object arguments; every object holds v1 tokens."""
    t = tokens_with_specials(runtime, stack, 14, "corpus")
    members = [gzip.compress(f'{{"a":"{t[5][:20]}'.encode()), gzip.compress(f'{t[5][20:]}"}}\n'.encode())]
    corpus: dict[str, dict[str, Any]] = {
        "c/gson.json": {"Body": f'{{"secret":"{gson(t[0])}"}}'.encode(), "ContentType": "application/json"},
        "c/dotnet.json": {"Body": f'{{"Secret":"{dotnet(t[1])}","n":1}}'.encode()},
        "c/access.log": {"Body": f"GET /cb?t={percent(t[2])}&x=1 200\nGET /cb?t={pct_lower(t[3])} 200\n".encode()},
        "c/utf16le.txt": {"Body": ("\ufeffkey = " + t[4] + "\r\n").encode("utf-16-le")},
        # a token cut across two gzip members, no Content-Encoding: found by the magic bytes
        "c/events.ndjson.gz": {"Body": b"".join(members), "ContentType": "application/x-ndjson"},
        "c/declared.json": {
            "Body": gzip.compress(f'{{"k":"{t[6]}","e":"{gson(t[7])}"}}'.encode()),
            "ContentEncoding": "gzip",
            "ContentType": "application/json",
        },
        "c/utf32be.txt.gz": {"Body": gzip.compress(("\ufeff" + t[8] + "\n").encode("utf-32-be"))},
        "c/sealed.bin": {"Body": b"\x93\x11\xfe", "Metadata": {"enc": f"alg=A256GCM;dek={t[9]}"}},
        "c/both.txt": {"Body": f"inner={t[10]}\n".encode(), "Metadata": {"wrapped-key": t[11]}},
        # adversarial neighbours and mixed escapings in one file
        "c/mixed.txt": {
            "Body": (f"AAAA{t[12]}AAAA {percent(t[13])}%20{dotnet(t[12])}\\n" + t[13].replace("/", "\\/")).encode()
        },
        "c/plain.txt": {"Body": b"no secrets here 100% \\u0041"},
    }
    s3 = stack.client("s3")
    for key, args in corpus.items():
        s3.put_object(Bucket=stack.bucket, Key=key, **args)
    return corpus


def decoded(stack: LocalStack, key: str) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    head = stack.client("s3").get_object(Bucket=stack.bucket, Key=key)
    _, text = decode_whole(head.get("ContentEncoding"), head["Body"].read())
    return text, head["Metadata"], head


def skeleton(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` with every token replaced by a mark, and the tokens."""
    found, malformed = scan(data)
    assert malformed == []
    parts, position = [], 0
    for token in found:
        parts += [data[position : token.start], b"<T>"]
        position = token.end
    return b"".join(parts) + data[position:], [t.text for t in found]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().out


def test_every_form_is_rotated_in_place_and_the_census_proves_it(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = handler_env
    runtime = stack.runtime()
    corpus = seed_corpus(stack, runtime)
    before = {key: decoded(stack, key) for key in corpus}
    stack.kms.rotate(stack.key_tag)
    target = f"s3://{stack.bucket}/c/"

    code, out = run(capsys, "census", target, "--min-version", "2")
    assert code == 1, out
    assert "NOT SAFE: 16 tokens in 10 objects are older than v2" in out
    assert "  v1: 16 tokens in 10 objects" in out

    code, out = run(capsys, "rotate", target)
    assert code == 0, out
    assert "rotated" in out and "failed" in out

    for key in corpus:
        text, metadata, head = decoded(stack, key)
        old_text, old_metadata, old_head = before[key]
        shape, new_tokens = skeleton(text)
        old_shape, old_tokens = skeleton(old_text)
        assert shape == old_shape, key  # every other byte of the decoded content is unchanged
        assert len(new_tokens) == len(old_tokens), key
        assert all(tok.startswith("ncpkms:v2:") for tok in new_tokens), key
        if old_tokens:
            assert runtime.kms.decrypt(stack.key_tag, new_tokens) == runtime.kms.decrypt(stack.key_tag, old_tokens)
        for name, value in old_metadata.items():
            value_shape = skeleton(value.encode())[0]
            assert skeleton(metadata[name].encode())[0] == value_shape, (key, name)
            assert all(v.startswith("ncpkms:v2:") for v in skeleton(metadata[name].encode())[1])
        assert head.get("ContentEncoding") == old_head.get("ContentEncoding"), key
        assert head.get("ContentType") == old_head.get("ContentType"), key
    raw = {key: stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read() for key in corpus}
    # each replacement is written in the form it was found
    assert b"\\u003d" in gzip.decompress(raw["c/declared.json"]) and b"\\u003D" in raw["c/dotnet.json"]
    assert b"ncpkms%3Av2%3A" in raw["c/access.log"] and b"ncpkms%3av2%3a" in raw["c/access.log"]
    assert raw["c/utf16le.txt"].startswith(b"\xff\xfe") and raw["c/events.ndjson.gz"][:2] == b"\x1f\x8b"
    assert gzip.decompress(raw["c/utf32be.txt.gz"]).startswith(b"\x00\x00\xfe\xff")

    code, out = run(capsys, "census", target, "--min-version", "2")
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].startswith(f"  SAFE: nothing under {target} is older than v2")

    # one zip holding a token: the census can no longer prove it
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("secret.txt", "k=" + runtime.kms.encrypt(stack.key_tag, [b"zipped"])[0])
    stack.client("s3").put_object(Bucket=stack.bucket, Key="c/bundle.zip", Body=archive.getvalue())
    code, out = run(capsys, "census", target, "--min-version", "2")
    assert code == 1, out
    assert "UNKNOWN: cannot prove it" in out
    assert "  opaque: 1 objects" in out and f"{target}bundle.zip: opaque: zip archive" in out
    # the operator knows what zips hold and excludes them: the verdict names the exclusion
    code, out = run(capsys, "census", target, "--min-version", "2", "--exclude-suffix", ".zip")
    assert code == 0, out
    assert "excluded by the operator, not read: suffix '.zip' (1 objects)" in out
    # rotate reports it opaque, never no-tokens, and exits 1 with the example
    code, out = run(capsys, "rotate", target)
    assert code == 1
    assert f"{target}bundle.zip: opaque: zip archive" in out


@pytest.mark.parametrize(
    ("body", "extra", "reason"),
    [
        (b"PK\x03\x04" + b"\x00" * 40, {}, "opaque: zip archive"),
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 40, {}, "opaque: zstd compression"),
        (b"BZh91AY&SY" + b"\x00" * 40, {}, "opaque: bzip2 compression"),
        (b"\xfd7zXZ\x00" + b"\x00" * 40, {}, "opaque: xz compression"),
        (b"7z\xbc\xaf\x27\x1c" + b"\x00" * 40, {}, "opaque: 7z archive"),
        (b"\x0b\x02\x80hello", {"ContentEncoding": "br"}, "opaque: Content-Encoding 'br' cannot be read"),
        (b"x\x9c\x03\x00", {"ContentEncoding": "deflate"}, "opaque: Content-Encoding 'deflate' cannot be read"),
        ("k = ncpkms:v1:AAAA".encode("utf-16-le"), {}, "opaque: NUL-interleaved text without a byte-order mark"),
    ],
)
def test_opaque_bodies_are_reported_with_the_reason_never_no_tokens(
    stack: LocalStack, runtime: Runtime, body: bytes, extra: dict[str, str], reason: str
) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="o", Body=body, **extra)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "o")])
    assert result.status is Status.OPAQUE and result.reason is not None and result.reason.startswith(reason)
    assert result.error is None and not result.retryable  # not a failure that retries forever
    census = CensusTaker(S3Store(stack.client("s3"))).run(stack.bucket, "", Census(min_version=2))
    assert census.kinds == {CensusKind.OPAQUE: 1}
    judgement = census.judge()
    assert (judgement.verdict, judgement.exit_code) == ("UNKNOWN", 1)
    assert stack.client("s3").get_object(Bucket=stack.bucket, Key="o")["Body"].read() == body


def test_an_opaque_body_still_gets_its_metadata_tokens_rotated(stack: LocalStack, runtime: Runtime) -> None:
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"dek"])
    body = b"PK\x05\x06" + b"\x00" * 18
    stack.client("s3").put_object(Bucket=stack.bucket, Key="z", Body=body, Metadata={"dek": token})
    stack.kms.rotate(stack.key_tag)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "z")])
    assert (result.status, result.rotated_tokens, result.reason) == (Status.OPAQUE, 1, "opaque: zip archive")
    got = stack.client("s3").get_object(Bucket=stack.bucket, Key="z")
    assert got["Metadata"]["dek"].startswith("ncpkms:v2:") and got["Body"].read() == body


def test_archived_objects_are_unreadable_not_failed(stack: LocalStack, runtime: Runtime) -> None:
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"cold"])
    stack.client("s3").put_object(Bucket=stack.bucket, Key="cold.txt", Body=token.encode(), StorageClass="GLACIER")
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "cold.txt")])
    assert result.status is Status.UNREADABLE and result.error is None
    assert result.reason == "archived"
    census = CensusTaker(S3Store(stack.client("s3"))).run(stack.bucket, "", Census(min_version=2))
    judgement = census.judge()
    assert census.kinds == {CensusKind.UNREADABLE: 1}
    assert (judgement.verdict, judgement.exit_code) == ("UNKNOWN", 2)  # nothing could be read


@pytest.mark.parametrize(
    ("body", "extra", "reason"),
    [
        (gzip.compress(b"x" * 1000, mtime=0)[:-12], {}, "gzip data ends inside a member"),
        (
            gzip.compress(b"abc", mtime=0)[:10] + b"\x07" * 20,
            {},
            "gzip data does not decompress near compressed byte 0",
        ),
        (b"not gzip at all", {"ContentEncoding": "gzip"}, "does not start with the gzip header (byte 0)"),
        (b"\xff\xfe" + "ok ".encode("utf-16-le") + b"\x00\xd8A\x00", {}, "UTF-16-LE text is invalid at byte 8"),
        (b'{"k":"ncpkms:v1:AAAA\\u003"}', {}, "first at byte 6: token cut short by an incomplete escape at byte 20"),
        (b"t=ncpkms%3Av0%3AAAAA", {}, "first at byte 2: token version is not a number"),
    ],
)
def test_bad_input_fails_permanently_with_reason_and_offset_and_is_left_untouched(
    stack: LocalStack, runtime: Runtime, body: bytes, extra: dict[str, str], reason: str
) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="bad", Body=body, **extra)
    stack.kms.rotate(stack.key_tag)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "bad")])
    assert result.status is Status.FAILED and result.error is not None and not result.retryable
    assert reason in result.error.reason
    assert stack.client("s3").get_object(Bucket=stack.bucket, Key="bad")["Body"].read() == body
    census = CensusTaker(S3Store(stack.client("s3"))).run(stack.bucket, "", Census(min_version=2))
    assert census.judge().verdict == "UNKNOWN"


def test_large_gzip_streams_multi_member_and_keeps_the_decoded_content(stack: LocalStack, runtime: Runtime) -> None:
    tokens = runtime.kms.encrypt(stack.key_tag, [f"n{i}".encode() for i in range(50)])
    lines = [f'{{"i":{i},"t":"{gson(tokens[i % 50])}","pad":"{"x" * 900}"}}\n' for i in range(12_000)]
    text = "".join(lines).encode()
    body = gzip.compress(text[: len(text) // 2], 1) + gzip.compress(text[len(text) // 2 :], 1)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="big.ndjson.gz", Body=body)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.settings = stack.settings(stream_threshold_bytes=64 * 1024, segment_bytes=6 * 1024 * 1024)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "big.ndjson.gz")])
    assert result.status is Status.ROTATED and result.rotated_tokens == 12_000, result
    after = gzip.decompress(stack.client("s3").get_object(Bucket=stack.bucket, Key="big.ndjson.gz")["Body"].read())
    assert skeleton(after)[0] == skeleton(text)[0]
    assert {t.version for t in scan(after)[0]} == {2}


def test_large_utf16_body_streams_and_keeps_its_bom(stack: LocalStack, runtime: Runtime) -> None:
    tokens = runtime.kms.encrypt(stack.key_tag, [f"w{i}".encode() for i in range(20)])
    text = "".join(f"{i}: {tokens[i % 20]} — ünïcödé {'x' * 300}\r\n" for i in range(4000))
    body = "\ufeff".encode("utf-16-be") + text.encode("utf-16-be")
    stack.client("s3").put_object(Bucket=stack.bucket, Key="wide.txt", Body=body)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.settings = stack.settings(stream_threshold_bytes=64 * 1024, segment_bytes=6 * 1024 * 1024)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "wide.txt")])
    assert result.status is Status.ROTATED and result.rotated_tokens == 4000, result
    after = stack.client("s3").get_object(Bucket=stack.bucket, Key="wide.txt")["Body"].read()
    assert after.startswith(b"\xfe\xff")
    decoded_after = after[2:].decode("utf-16-be").encode()
    assert skeleton(decoded_after)[0] == skeleton(text.encode())[0]
    assert {t.version for t in scan(decoded_after)[0]} == {2}


def test_small_gzip_bodies_that_inflate_past_the_memory_budget_are_streamed(
    stack: LocalStack, runtime: Runtime
) -> None:
    tokens = runtime.kms.encrypt(stack.key_tag, [b"a", b"b"])
    text = "".join(f"{tokens[i % 2]} {'z' * 1000}\n" for i in range(3000)).encode()  # ~3 MiB
    s3 = stack.client("s3")
    for key in ("g1.gz", "g2.gz"):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=gzip.compress(text))  # ~50 KiB each
    stack.kms.rotate(stack.key_tag)
    runtime.engine.memory_budget_bytes = 4 * 1024 * 1024  # room for one decoded body, not two
    results = runtime.engine.rotate([ObjectRef(stack.bucket, "g1.gz"), ObjectRef(stack.bucket, "g2.gz")])
    assert [(r.status, r.rotated_tokens) for r in results] == [(Status.ROTATED, 3000)] * 2
    for key in ("g1.gz", "g2.gz"):
        after = gzip.decompress(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
        assert skeleton(after)[0] == skeleton(text)[0] and {t.version for t in scan(after)[0]} == {2}


WRITINGS = {
    "plain": lambda t: t,
    "gson": gson,
    "dotnet": dotnet,
    "percent": percent,
    "percent lower": pct_lower,
}
CONTAINERS = {
    "bytes": lambda text: (text, {}),
    "utf-16-le": lambda text: (b"\xff\xfe" + text.decode().encode("utf-16-le"), {}),
    "utf-32-be": lambda text: (b"\x00\x00\xfe\xff" + text.decode().encode("utf-32-be"), {}),
    "gzip": lambda text: (gzip.compress(text), {"ContentEncoding": "gzip"}),
    "gzip members": lambda text: (gzip.compress(text[:7]) + gzip.compress(text[7:]), {}),
}


@pytest.mark.parametrize("seed", range(3))
def test_property_rotating_then_decoding_keeps_every_other_byte_and_every_plaintext(
    stack: LocalStack, runtime: Runtime, seed: int
) -> None:
    """Random bodies in every writing and container: after rotation every token is at the new
    version with the same plaintext (asked of the emulator) and every other decoded byte is unchanged."""
    import random

    rng = random.Random(seed)
    s3 = stack.client("s3")
    originals: dict[str, tuple[bytes, list[str]]] = {}
    for container, pack in CONTAINERS.items():
        for writing, write in WRITINGS.items():
            tokens = runtime.kms.encrypt(stack.key_tag, [rng.randbytes(rng.randint(1, 40)) for _ in range(8)])
            # before a token anything goes; after one, only what ends it (else it is part of the token)
            before = ["AAAA", "=", "%", "100% ", "\\u0041", "\\n", " ", "+/", "é", "ncpkms:v", ""]
            after = [" ", "\\n", '\\"', "é", ",", "%20", "\\u0020"]
            text = "".join(rng.choice(before) + write(t) + rng.choice(after) for t in tokens).encode()
            body, extra = pack(text)
            key = f"p/{container}/{writing}"
            s3.put_object(Bucket=stack.bucket, Key=key, Body=body, **extra)
            originals[key] = (text, tokens)
    stack.kms.rotate(stack.key_tag)

    results = runtime.engine.rotate([ObjectRef(stack.bucket, key) for key in originals])

    for result in results:
        key = result.ref.key
        text, tokens = originals[key]
        assert result.status is Status.ROTATED and result.rotated_tokens == len(tokens), (key, result)
        after, _, _ = decoded(stack, key)
        shape, new_tokens = skeleton(after)
        assert shape == skeleton(text)[0], key
        assert all(t.startswith(f"ncpkms:v{result.new_version}:") for t in new_tokens) and result.new_version == 2
        assert runtime.kms.decrypt(stack.key_tag, new_tokens) == runtime.kms.decrypt(stack.key_tag, tokens), key
