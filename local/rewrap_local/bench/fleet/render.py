"""The fleet bench's figures: the printed tables, ``fleet.md``, ``fleet.jsonl`` and ``fleet.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..render import _num, render_text

PHASES = (("census_before", "census before"), ("rotate", "rotation"), ("census", "census"))


def phases(figures: dict[str, Any]) -> list[tuple[str, str]]:
    return [(phase, title) for phase, title in PHASES if phase in figures]


def size_rows(record: dict[str, Any]) -> list[list[str]]:
    shown = phases(next(iter(record["sizes"].values())))
    header = ["objects"]
    for _, title in shown:
        header += [f"{title} obj/s", f"{title} S3/obj"]
    header += ["rotation KMS/obj", "peak MiB/inv (max, median)", "merge ms (partials)", "after rotation"]
    header += ["second look enqueued", "steady S3/obj", "steady enqueued"]
    rows = [header]
    for size, f in record["sizes"].items():
        row = [f"{int(size):,}"]
        for phase, _ in shown:
            row += [_num(f[phase]["objects_per_s"]), f"{f[phase]['s3_per_object']:.3f}"]
        peaks = [f[phase]["peak_mib_max"] or 0 for phase, _ in shown]
        medians = [f[phase]["peak_mib_median"] or 0 for phase, _ in shown]
        row += [
            f"{f['rotate']['kms_per_object']:.4f}",
            f"{max(peaks):.2f}, {max(medians):.2f}",
            f"{merge_ms(f['census'])} ({f['census']['partials']})",
            f"{f['census']['verdict']}{'' if not f['problems'] else ' — WRONG'}",
        ]
        row += steady_cells(f)
        rows.append(row)
    return rows


def steady_cells(figures: dict[str, Any]) -> list[str]:
    """The scheduled sweeps after the rotation (n/a in a record from before incremental sweeps)."""
    if "steady" not in figures:
        return ["n/a"] * 3
    look, steady = figures["second_look"], figures["steady"]
    return [f"{look['enqueued']:,}", f"{steady['s3_per_object']:.4f}", f"{steady['enqueued']:,}"]


def merge_ms(census: dict[str, Any]) -> str:
    """The merge's CPU time (a record from before it was taken: its wall time), as ``merge_method`` says."""
    return f"{census.get('merge_cpu_s', census['merge_s']) * 1000:.1f}"


def ratio_rows(record: dict[str, Any]) -> list[list[str]]:
    ratios = record["flatness"]["ratios"]
    sizes = list(record["sizes"])
    rows = [["per-object figure ÷ smallest size", *(f"{int(s):,}" for s in sizes)]]
    for label, by_size in ratios.items():
        rows.append([label, *("n/a" if by_size[s] is None else f"{by_size[s]:.2f}x" for s in sizes)])
    return rows


def checks(record: dict[str, Any]) -> list[str]:
    lines = []
    for size, f in record["sizes"].items():
        spot, census = f["spot_check"], f["census"]
        before = f"census before: {f['census_before']['headline']}; " if "census_before" in f else ""
        lines.append(
            f"{int(size):,} objects: {before}rotation {f['rotate']['statuses']}; census after it: "
            f"{census['verdict']}, complete {census['complete']}, {census['accounted']:,} keys reported, tokens "
            f"{census['tokens_by_version']}; {spot['objects']} objects read back directly: {len(spot['wrong'])} wrong, "
            f"{spot['undecryptable']} of {spot['tokens']:,} tokens undecryptable"
        )
        if "steady" in f:
            look, steady = f["second_look"], f["steady"]
            lines.append(
                f"  then the scheduled sweeps: a second look at what the rotation wrote ({look['enqueued']:,} "
                f"enqueued, {look['s3_requests']:,} S3 requests), and a converged target ({steady['enqueued']:,} "
                f"enqueued, {steady['s3_requests']:,} S3 requests: {steady['s3_ops']})"
            )
        lines += [f"  WRONG: {problem}" for problem in f["problems"]]
    return lines


def describe(record: dict[str, Any]) -> str:
    p = record["parameters"]
    return (
        f"{p['workers']} rotate containers (child processes, one runtime each; {p['traced']} tracing memory) "
        "+ 1 sweep container; "
        f"{p['keys_per_message']} keys per message, {p['batch']} messages per invocation, concurrency "
        f"{p['concurrency']} per container; injected latency KMS {p['kms_latency_ms'][0]:g}-"
        f"{p['kms_latency_ms'][1]:g} ms, S3 {p['s3_latency_ms']:g} ms per request"
    )


def merge_method(record: dict[str, Any]) -> str:
    """How the merge was timed (a record from before the median of its CPU time: the fastest of 3, wall time)."""
    repeats = record["parameters"].get("merge_repeats")
    if not repeats:
        return (
            "Merge: `merge_run` over the census run's partials (fetching them not included), its wall time, the "
            "fastest of 3 merges; not judged (its CPU time was not taken)."
        )
    return (
        "Merge: `merge_run` over the census run's partials (fetching them not included), timed once every size "
        f"has run, in {repeats} rounds that each merge every size's partials in turn, so a busy spell of the "
        "shared machine slows every size alike; the median of each size's CPU time (the merge is all CPU, "
        "its wall time doubles whenever another process takes the core) is shown and judged per partial, "
        "the unit `merge_run` works in."
    )


def render_markdown(record: dict[str, Any]) -> str:
    def table(rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(rows[0]) + " |",
            "|" + "|".join("---" if c == 0 else "---:" for c in range(len(rows[0]))) + "|",
            *("| " + " | ".join(row) + " |" for row in rows[1:]),
        ]

    git, machine = record["git"], record["machine"]
    out = [
        "<!-- written by `make bench-fleet` (python -m rewrap_local.bench.fleet); do not edit -->",
        "# The fleet path at bucket scale",
        "",
        f"Run {record['timestamp']} at `{git['commit'][:10]}`{' (dirty)' if git['dirty'] else ''} on "
        f"{machine['cpus']} CPUs ({machine['cpu']}), {record['duration_s']} s in all. {describe(record)}.",
        "",
        "Per size, one bucket of the mixed set (70% small JSON documents of 1-3 tokens, 10% configs of "
        "20-60 tokens, 20% envelopes of 4 KiB; half of them already current). Each run goes through the "
        "fleet path: the sweep handler lists and enqueues, the rotate containers receive SQS batches, invoke "
        "the rotate handler with the SQS event Lambda builds and delete what it acknowledged. rotation: a "
        "rotation sweep; census: a census run after it, which is also the verification (SAFE, complete, every "
        "seeded token counted at the newest version). Requests are counted, not estimated: S3 and SQS through "
        "botocore hooks on every container's clients, KMS at the emulator; obj/s is end to end, from the "
        "sweep's invocation to the last acknowledged message. Peak MiB: tracemalloc's peak per handler call "
        "above the heap at its start, in the containers that trace memory. "
        f"{merge_method(record)}",
        "",
        *table(size_rows(record)),
        "",
        f"**{record['flatness']['verdict']}**",
        "",
        *table(ratio_rows(record)),
        "",
        "Verification:",
        "",
        *(f"- {line}" for line in checks(record)),
        "",
        "![per-object time and requests against bucket size](fleet.png)",
        "",
    ]
    return "\n".join(out)


def chart(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in record["sizes"]]
    figures = list(record["sizes"].values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for phase, title in phases(figures[0]):
        left.plot(sizes, [f[phase]["ms_per_object"] for f in figures], marker="o", label=title)
    left.set_ylabel("wall time per object (ms)")
    left.set_title("time per object", fontsize=10)
    series = [
        ("census", "s3_per_object", "census S3"),
        ("rotate", "s3_per_object", "rotation S3"),
        ("rotate", "kms_per_object", "rotation KMS"),
        ("rotate", "sqs_per_object", "rotation SQS"),
    ]
    for phase, name, label in series:
        right.plot(sizes, [f[phase][name] for f in figures], marker="o", label=label)
    right.set_ylabel("requests per object")
    right.set_title("requests per object", fontsize=10)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("objects in the bucket (log scale)")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.set_ylim(bottom=0)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"rewrap through the fleet path: flat per-object cost means cost linear in objects\n"
        f"{record['flatness']['verdict']} — {record['timestamp']} {record['git']['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, record: dict[str, Any], *, append: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if append:
        with (out / "fleet.jsonl").open("a") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "fleet.md").write_text(render_markdown(record))
    chart(record, out / "fleet.png")


def print_summary(record: dict[str, Any]) -> None:
    print()
    print(describe(record))
    print()
    print(render_text(size_rows(record)))
    print()
    print(render_text(ratio_rows(record)))
    print(merge_method(record))
    print()
    for line in checks(record):
        print(line)
    for size, f in record["sizes"].items():
        ops = {phase: f[phase]["s3_ops"] for phase, _ in phases(f)}
        kms = f["rotate"]["kms_ops"]
        print(f"{int(size):,} objects: S3 ops {ops}; rotation KMS ops {kms}; seeded in {f['seed_s']} s")
    print()
    print(record["flatness"]["verdict"])
    print(f"\n({record['duration_s']} s; results appended to fleet.jsonl)")
