"""The targets, each judged from the figures of the same run."""

from __future__ import annotations

from typing import Any

from .constants import TARGET_PEAK_MIB, MiB
from .render import client_cpu

# How far from its floor each data set may be (NDJSON is CPU-bound: scanning, splicing and the emulator).
FLOOR_RATIO = {"ndjson": 3.0}
# The data sets of small objects, where a bare GET+PUT is the fair comparison for the client's CPU.
CPU_SETS = ("small", "mixed")


def least_seconds(data_set: dict[str, Any], params: dict[str, Any], cpus: int) -> tuple[float, str]:
    """The least time this machine allows rewrap's run of ``data_set``, and what sets it: every process's CPU
    spread over the CPUs (rewrap, the emulator and moto share them), or its KMS requests in waves of the
    concurrency at the lowest injected latency (NCP's list limit sets how many requests the tokens take)."""
    rewrap = data_set["rewrap"]
    cpu = sum(rewrap.get("cpu_s", {}).values()) / cpus
    waves = -(-rewrap.get("re-encrypt_requests", 0) // params["concurrency"])
    kms = waves * params["kms_latency_ms"][0] / 1000
    return (cpu, "CPU") if cpu >= kms else (kms, f"{waves} KMS waves")


def verdicts(
    sets: dict[str, dict[str, Any]],
    large: dict[str, Any] | None,
    cold: dict[str, Any],
    params: dict[str, Any],
    cpus: int,
) -> list[dict[str, Any]]:
    mixed, ndjson, envelope = sets["mixed"], sets["ndjson"], sets["envelope"]
    again = mixed["current_again"]
    # Envelope bodies are read once (they may hold tokens of their own) and never written when only
    # the metadata changed.
    env_ok = envelope["rewrap"]["bytes_written"] == 0 and envelope["rewrap"]["bytes_read"] <= envelope["bytes"]
    out = [
        {
            "target": "≥ 20x naive throughput on the mixed set",
            "pass": mixed["speedup_objects"] >= 20,
            "figures": f"{mixed['speedup_objects']}x objects/s ({mixed['rewrap']['objects_per_s']} vs "
            f"{mixed['naive']['objects_per_s']}), {mixed['speedup_tokens']}x tokens/s; the S3 floor itself is "
            f"{mixed['floor_speedup_objects']}x naive",
        },
        {
            "target": "≥ 100 tokens per KMS request on NDJSON",
            "pass": (ndjson["rewrap"]["tokens_per_kms_request"] or 0) >= 100,
            "figures": f"{ndjson['rewrap']['tokens_per_kms_request']} tokens/request "
            f"({ndjson['rewrap']['re-encrypt_requests']} requests for {ndjson['tokens']:,} tokens)",
        },
        {
            "target": "0 KMS requests for already-current objects once the newest version is known",
            "pass": again["re-encrypt_requests"] == 0 and again["decrypt_requests"] == 0,
            "figures": f"{again['re-encrypt_requests']} KMS requests for {again['objects']} current objects "
            f"({again['tokens']} tokens); S3 {again['s3_requests_per_object']} requests/object",
        },
        {
            "target": "envelope objects: body read at most once, 0 body bytes written",
            "pass": env_ok,
            "figures": f"{envelope['rewrap']['bytes_read']} B read, {envelope['rewrap']['bytes_written']} B written "
            f"for {envelope['bytes'] // MiB} MiB of bodies; ops {envelope['rewrap']['s3_ops']}",
        },
        {
            "target": "every data set within 1.25x of its S3-request floor (NDJSON 3x)",
            "pass": all(f["time_vs_floor"] <= FLOOR_RATIO.get(name, 1.25) for name, f in sets.items()),
            "figures": "; ".join(
                f"{name} {f['time_vs_floor']}x ({f['rewrap']['seconds']} s vs {f['floor']['seconds']} s, "
                f"{f['rewrap']['s3_requests_per_object']} vs {f['floor']['s3_requests_per_object']} requests/object)"
                for name, f in sets.items()
            ),
        },
        {
            "target": "(figures only) the least time these CPUs and NCP's request sizes allow each run, ÷ its floor",
            "pass": None,
            "figures": "; ".join(
                f"{name} {max(least, f['floor']['seconds']) / f['floor']['seconds']:.2f}x ({least:.3f} s, {what})"
                for name, f in sets.items()
                for least, what in [least_seconds(f, params, cpus)]
            ),
        },
        {
            "target": "rewrap's client CPU per rotated object ≤ 2x a bare boto3 GET+PUT (small and mixed sets)",
            "pass": all(client_cpu(sets[n], "rewrap") <= 2 * client_cpu(sets[n], "floor") for n in CPU_SETS),
            "figures": "; ".join(
                f"{n} {client_cpu(sets[n], 'rewrap'):.2f} ms vs {client_cpu(sets[n], 'floor'):.2f} ms "
                f"({client_cpu(sets[n], 'rewrap') / client_cpu(sets[n], 'floor'):.2f}x)"
                for n in CPU_SETS
            ),
        },
    ]
    if large is not None:
        out.append(
            {
                "target": f"{large['size_mib']} MiB text object ≤ {TARGET_PEAK_MIB} MiB peak memory",
                "pass": large["peak_above_baseline_mib"] <= TARGET_PEAK_MIB and large["status"] == "rotated",
                "figures": f"{large['peak_above_baseline_mib']} MiB above a {large['baseline_rss_mib']} MiB baseline "
                f"({large['status']}, {large['rotated_tokens']:,} tokens, {large['seconds']} s)",
            }
        )
    out.append(
        {
            "target": "built rotate function: import app ≤ 1.5x a bare import boto3 (layer bytecode shipped)",
            "pass": cold["app_vs_boto3"] <= 1.5,
            "figures": f"import app {cold['rotate']['app_with_bytecode']} ms, with boto3 "
            f"{cold['rotate']['app_and_boto3_with_bytecode']} ms ({cold['app_and_boto3_vs_boto3']}x) vs import boto3 "
            f"{cold['rotate']['boto3_with_bytecode']} ms ({cold['app_vs_boto3']}x); without the layer's bytecode "
            f"{cold['rotate']['app_and_boto3_without_bytecode']} ms; tracing on "
            f"{cold['rotate']['app_traced_with_bytecode']} ms (median of {cold['runs']})",
        }
    )
    return out
