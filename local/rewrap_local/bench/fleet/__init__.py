"""``make bench-fleet``: the census and the rotation through the fleet path, at growing bucket sizes.

On the embedded stack of ``make bench`` (moto and the NCP KMS emulator in child processes, the same
injected KMS and S3 latency), per size: a bucket of mixed objects (``make bench``'s mixed set: 70%
small JSON documents, 10% configs, 20% envelopes, half of them already current) is seeded, then

1. **rotation**: the sweep container is invoked (a rotation sweep); it lists the bucket and enqueues
   rotate requests; a pool of rotate containers (child processes, each with its own runtime, as Lambda
   runs them) receives SQS batches, invokes the rotate handler with real-shaped SQS events and deletes
   what was acknowledged;
2. **census**: the same with ``{"mode": "census"}``: census requests, one partial each, fetched and
   merged (``merge_run``); it is also the verification: the merged verdict must be SAFE and complete,
   with every seeded token counted at the newest version. ``--census-before`` adds a census run
   before the rotation, which must be NOT SAFE with exactly the seeded stale counts;
3. **the scheduled sweeps after it** (incremental, as the schedule runs them): the *second look* takes
   exactly what the rotation wrote (and publishes the rotation run's verdict); the *steady* sweep finds
   the target converged: its S3 requests (its listing pages and a few of its own) and its keys enqueued
   (none) are reported per size.

Before the measured runs each container is warmed up on objects of its own under ``warmup/``, so no
measured invocation pays for a container's first calls.

Counted for real, not estimated: S3 and SQS requests through botocore hooks on every container's
clients, KMS requests at the emulator. Memory: tracemalloc's peak per handler call. The census
counts are checked against what was seeded, and a sample of objects is read back directly; a wrong
result is reported and the exit status is 2. A size whose per-object figures drift from the
smallest size's by more than the tolerance gets a NOT FLAT verdict (exit status 0: a noisy machine
is not a broken benchmark).

The package: ``params`` (parameters, what a size seeded), ``stack`` (the servers and the admin
clients), ``seeding``, ``sweep_run`` (one sweep → queue → rotate-containers run and the warm-up),
``phase`` (what a run did, as figures), ``census_merge`` (the partials fetched, merged and timed),
``checks`` (the results against what was seeded), ``driver`` (one size, end to end), ``flatness``
(the verdict across sizes), ``render`` (tables, fleet.md, fleet.png) and ``cli`` (the entry point).

Run: ``python -m rewrap_local.bench.fleet [--quick] [--sizes 1000 5000 20000] [--out docs/bench]``.
"""
