"""The figures as a text table, markdown (``latest.md``), a chart (``throughput.png``) and the printed summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .constants import MiB


def _mib(n: float) -> str:
    return f"{n / MiB:.2f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n:.0f} B"


def _num(x: float) -> str:
    """Throughputs and ratios: whole numbers from 100 up, three significant digits below."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def table_rows(sets: dict[str, dict[str, Any]]) -> list[list[str]]:
    header = [
        "data set",
        "rewrap obj/s",
        "naive obj/s",
        "floor obj/s",
        "x naive",
        "rewrap tok/s",
        "naive tok/s",
        "KMS req/token",
        "tokens/KMS req",
        "S3 req/obj (floor)",
        "read/obj",
        "written/obj",
        "peak MiB",
        "÷ floor",
    ]
    rows = [header]
    for name, f in sets.items():
        r, n, fl = f["rewrap"], f["naive"], f["floor"]
        rows.append(
            [
                name,
                _num(r["objects_per_s"]),
                _num(n["objects_per_s"]),
                _num(fl["objects_per_s"]),
                f"{_num(f['speedup_objects'])}x",
                _num(r["tokens_per_s"]),
                _num(n["tokens_per_s"]),
                f"{r['kms_requests_per_token']}",
                f"{r['tokens_per_kms_request']}",
                f"{r['s3_requests_per_object']} ({fl['s3_requests_per_object']})",
                _mib(r["bytes_read_per_object"]),
                _mib(r["bytes_written_per_object"]),
                f"{r['peak_rss_mib']}",
                f"{f['time_vs_floor']}x",
            ]
        )
    return rows


def rotated_objects(figures: dict[str, Any]) -> int:
    """Objects of a data set that needed rotating (the floor writes exactly these)."""
    return max(1, figures["objects"] - figures["current_objects"])


def client_cpu(figures: dict[str, Any], who: str) -> float:
    """CPU milliseconds of the contender's own process per rotated object."""
    return figures[who]["cpu_s"]["self"] * 1000 / rotated_objects(figures)


def cost_rows(sets: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Per data set: S3 requests per object by operation beside the floor's, and whose CPU the run took."""
    rows = [
        [
            "data set",
            "S3 requests/object by operation: rewrap",
            "floor",
            "CPU s: rewrap / emulator / moto",
            "floor: client / moto",
            "client CPU ms/rotated object (floor)",
        ]
    ]
    for name, f in sets.items():
        r, fl = f["rewrap"], f["floor"]

        def ops(run: dict[str, Any]) -> str:
            counts = sorted(run["s3_ops"].items(), key=lambda item: -item[1])
            return ", ".join(f"{op} {n / run['objects']:.3g}" for op, n in counts)

        rows.append(
            [
                name,
                ops(r),
                ops(fl),
                f"{r['cpu_s']['self']} / {r['cpu_s']['kms']} / {r['cpu_s']['moto']}",
                f"{fl['cpu_s']['self']} / {fl['cpu_s']['moto']}",
                f"{client_cpu(f, 'rewrap'):.2f} ({client_cpu(f, 'floor'):.2f}; "
                f"{client_cpu(f, 'rewrap') / max(client_cpu(f, 'floor'), 1e-9):.2f}x)",
            ]
        )
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(record: dict[str, Any]) -> str:
    rows = table_rows(record["data_sets"])
    p = record["parameters"]
    out = [
        "<!-- written by `make bench` (python -m rewrap_local.bench); do not edit -->",
        f"Run {record['timestamp']} at `{record['git']['commit'][:10]}`{' (dirty)' if record['git']['dirty'] else ''}"
        f" on {record['machine']['cpus']} CPUs ({record['machine']['cpu']}), {'quick' if p['quick'] else 'full'} "
        f"sizes. Injected latency: KMS {p['kms_latency_ms'][0]:g}-{p['kms_latency_ms'][1]:g} ms per request, "
        f"S3 {p['s3_latency_ms']:g} ms per request; concurrency {p['concurrency']}, KMS rate limit "
        f"{p['kms_rate_limit']:g}/s, {p['batch']} keys per rotate request.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if c == 0 else "---:" for c in range(len(rows[0]))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
        "",
        "Objects/s and tokens/s: medians of the rounds; naive: one sequential pass over the sample below. "
        "S3 req/obj in parentheses: the floor's. Peak MiB: growth of rewrap's RSS high-water mark during the run. "
        "÷ floor: rewrap's time over the floor's (the same unavoidable S3 requests at the same concurrency, no KMS).",
        "",
        *_markdown_table(cost_rows(record["data_sets"])),
        "",
        "CPU s: seconds of CPU over the median run, by process (rewrap's own process, the NCP KMS emulator, the "
        "moto server). Client CPU per rotated object: rewrap's process against the floor's bare boto3 GET+PUT.",
        "",
        "| data set | contents | naive measured on |",
        "|---|---|---|",
        *(
            f"| {name} | {f['title']} | {f['naive']['objects']} of {f['objects']} objects |"
            for name, f in record["data_sets"].items()
        ),
        "",
        "| target | verdict | figures |",
        "|---|---|---|",
        *(f"| {v['target']} | {verdict(v['pass'])} | {v['figures']} |" for v in record["targets"]),
        "",
    ]
    mixed = record["data_sets"]["mixed"]
    out.append(
        f"`REWRAP_VERIFY=true` on the mixed set: {mixed['verify']['seconds']} s vs {mixed['rewrap']['seconds']} s "
        f"({mixed['verify_time_ratio']}x), {mixed['verify']['decrypt_requests']} decrypt requests on top of "
        f"{mixed['verify']['re-encrypt_requests']} re-encrypt requests."
    )
    out.append("")
    return "\n".join(out)


def _markdown_table(rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" for _ in rows[0]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
    ]


def chart(sets: dict[str, dict[str, Any]], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sets)
    series = [("rewrap", "#1f77b4"), ("naive", "#d62728"), ("floor", "#7f7f7f")]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.26
    for k, (who, colour) in enumerate(series):
        values = [sets[n][who]["objects_per_s"] for n in names]
        xs = [i + (k - 1) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=who if who != "floor" else "S3 floor (no KMS)", color=colour)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.2g}" for v in values], fontsize=7, padding=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [f"{n}\n({sets[n]['objects']} obj, {sets[n]['tokens']:,} tok)" for n in names])
    ax.set_ylabel("objects per second (log scale)")
    ax.set_title(f"rewrap vs a naive rotator vs the S3-request floor\n{subtitle}", fontsize=10)
    ax.set_ylim(top=max(sets[n][who]["objects_per_s"] for n in names for who, _ in series) * 10)
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    if record["targets"]:
        (out / "latest.md").write_text(render_markdown(record))
        p = record["parameters"]
        subtitle = (
            f"KMS {p['kms_latency_ms'][0]:g}-{p['kms_latency_ms'][1]:g} ms, S3 {p['s3_latency_ms']:g} ms per request, "
            f"concurrency {p['concurrency']} — {record['timestamp']} {record['git']['commit'][:10]}"
        )
        chart(record["data_sets"], out / "throughput.png", subtitle)


def print_summary(record: dict[str, Any]) -> None:
    sets = record["data_sets"]
    print()
    print(render_text(table_rows(sets)))
    print()
    print(render_text(cost_rows(sets)))
    print()
    for name, f in sets.items():
        r = f["rewrap"]
        print(
            f"{name}: {f['title']}; naive on {f['naive']['objects']} of {f['objects']}; rewrap S3 ops {r['s3_ops']}; "
            f"floor ops {f['floor']['s3_ops']}; results {r['statuses']}; rewrap runs {f['rewrap_seconds_all']} s, "
            f"floor runs {f['floor_seconds_all']} s; CPU s rewrap {r['cpu_s']}, floor {f['floor']['cpu_s']}"
        )
    if "mixed" in sets:
        m = sets["mixed"]
        print(
            f"REWRAP_VERIFY=true on mixed: {m['verify']['seconds']} s vs {m['rewrap']['seconds']} s "
            f"({m['verify_time_ratio']}x), +{m['verify']['decrypt_requests']} decrypt requests"
        )
    if record["large_text_object"]:
        large = record["large_text_object"]
        print(
            f"large text object: {large['size_mib']} MiB, {large['status']}, {large['seconds']} s "
            f"({large['mib_per_s']} MiB/s), peak {large['peak_above_baseline_mib']} MiB above baseline "
            f"{large['baseline_rss_mib']} MiB; S3 {large['s3']['ops']}; {large['re-encrypt_requests']} KMS requests"
        )
    if record.get("gzip_ndjson_object"):
        gz = record["gzip_ndjson_object"]
        print(
            f"gzip NDJSON object: {gz['size_mib']} MiB gzip ({gz['text_mib']} MiB of text, 2 members), {gz['status']}, "
            f"{gz['seconds']} s: {gz['mib_per_s']} MiB/s of gzip, {gz['text_mib_per_s']} MiB/s of text, "
            f"{gz['tokens_per_s']} tokens/s; peak {gz['peak_above_baseline_mib']} MiB above baseline "
            f"{gz['baseline_rss_mib']} MiB (peak RSS {gz['peak_rss_mib']} MiB)"
        )
    if record.get("scan_cost"):
        sc = record["scan_cost"]
        print(
            f"scanner on a {sc['body_mib']} MiB plain NDJSON body ({sc['tokens']:,} tokens): before "
            f"{sc['before_mib_per_s']} MiB/s, now {sc['now_mib_per_s']} MiB/s "
            f"(cost {sc['cost_ratio']}x, target ≤ 1.2x); "
            f"with escapes possible (a '%' in the body) {sc['with_escapes_mib_per_s']} MiB/s "
            f"({sc['escaped_cost_ratio']}x)"
        )
    cold = record["cold_start"]
    for name in ("rotate", "sweep"):
        figures = ", ".join(f"{case} {ms} ms" for case, ms in cold[name].items())
        print(f"cold start, built {name} function: {figures}")
    print(f"layer: {cold['layer_mib']} MiB unzipped, {cold['layer_zip_mib']} MiB zipped")
    print()
    for v in record["targets"]:
        print(f"[{verdict(v['pass'])}] {v['target']}: {v['figures']}")
    print(f"\n({record['duration_s']} s; results appended to results.jsonl)")


def verdict(passed: bool | None) -> str:
    """A target's verdict; None for a line that gives figures only."""
    return "—" if passed is None else "PASS" if passed else "FAIL"
