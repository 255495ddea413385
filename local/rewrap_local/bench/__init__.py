"""``make bench``: rewrap against a naive rotator and the S3-request floor, on the embedded stack.

The moto server and the NCP KMS emulator each run in a child process, so the CPU time and memory of
this process are rewrap's (and the other contenders') alone. Every S3 client (rewrap's, the naive
rotator's, the floor's) gets the same injected latency and request/byte counters through botocore
event hooks; the emulator delays every KMS request. Per data set, each contender starts from the
same seeded state (objects at key version 1, one rotation done in the emulator):

* **rewrap**: the real engine, ``runtime.engine.rotate(refs)`` in batches of one rotate request;
* **naive**: sequential; per object GET, one re-encrypt request per token, PUT (envelopes: HEAD, one
  re-encrypt, copy with REPLACE); measured on a stratified sample when the full set would take long;
* **floor**: only the S3 requests that cannot be avoided (rotating text GET+PUT, envelope GET+COPY,
  current text GET, current envelope GET: an envelope's body may hold tokens too), at rewrap's
  concurrency, no KMS at all.

Figures are printed, appended to ``<out>/results.jsonl``, tabulated in ``<out>/latest.md`` and charted
in ``<out>/throughput.png``. The exit status is non-zero only when the benchmark itself breaks (a crash
or an object left wrong), never for a missed target.

Run: ``python -m rewrap_local.bench [--quick] [--out docs/bench]``.
"""

from .cli import main

__all__ = ["main"]
