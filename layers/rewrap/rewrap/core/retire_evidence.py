"""The evidence of a retirement, an undo or a refusal: one JSON record and one Markdown page under
``<REWRAP_REPORT_PREFIX>retire/<keyTag>/``, beside the census data the decision relied on.

What it states is what an auditor asks when a key version is retired (PCI DSS 3.6/3.7, ISO 27001
A.8.24): which key and versions, their states before and after, the verdict (census runs, counts per
version, targets, exclusions, opaque and unreadable objects), when, who, the SHA-256 of the census data,
and plainly what the evidence does not cover. NCP keeps a key's activity history 30 days and 30,000
records, so these records are the lasting trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rewrap.core.config import SweepTarget
from rewrap.core.ports import KeyState, ObjectStore
from rewrap.core.retire_verdict import Verdict
from rewrap.errors import ConfigError

RECORD_FORMAT = "rewrap-retirement/1"
FOLDER = "retire"
NOT_COVERED = (
    "Objects outside the targets named above: any other bucket, prefix or store that may hold tokens of this "
    "key (databases, backups, logs, caches, other accounts).",
    "The key's other consumers, which no S3 census can see: Kubernetes secret encryption in NCP's managed "
    "clusters (NKS), NCP Secret Manager, and any application that encrypts or decrypts with this key itself.",
    "Objects the operator excluded (named above): they were not read.",
    "Tokens written with a retired version after the census: rewrap's own version-disabled answers and NCP's "
    "activity history (`rewrap retire status`) are where they show.",
)


@dataclass
class Evidence:
    """What one run of ``rewrap retire`` decided and did."""

    action: str  # "retire" or "undo"
    outcome: str  # retired, re-enabled, refused, console, failed, nothing to do
    key_tag: str
    management: str
    time: datetime
    who: dict[str, str | None]
    asked: dict[str, Any]
    before: KeyState | None
    after: KeyState | None = None
    versions: list[int] = field(default_factory=list)  # the versions this run is about
    reasons: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    console_steps: list[str] = field(default_factory=list)
    ident: str = ""

    def to_dict(self, locations: dict[str, str]) -> dict[str, Any]:
        def state(key: KeyState | None, version: int) -> str | None:
            found = key.versions.get(version) if key else None
            return None if found is None else ("enabled" if found.enabled else "disabled")

        return {
            "format": RECORD_FORMAT,
            "id": self.ident,
            "action": self.action,
            "outcome": self.outcome,
            "reasons": self.reasons,
            "time": self.time.isoformat(timespec="milliseconds"),
            "who": self.who,
            "key": {
                "tag": self.key_tag,
                "managedThrough": self.management,
                "stateBefore": self.before.status if self.before else None,
                "stateAfter": self.after.status if self.after else None,
                "currentVersionBefore": self.before.current_version if self.before else None,
                "currentVersionAfter": self.after.current_version if self.after else None,
            },
            "versions": [
                {"version": v, "before": state(self.before, v), "after": state(self.after or self.before, v)}
                for v in self.versions
            ],
            "asked": self.asked,
            "verdicts": [
                {**verdict.to_dict(), "dataLocation": locations.get(f"data-{n}")}
                for n, verdict in enumerate(self.verdicts, 1)
            ],
            "notCovered": list(NOT_COVERED),
            "consoleSteps": self.console_steps,
        }


def evidence_folder(report_prefix: str, key_tag: str) -> SweepTarget:
    if not report_prefix.startswith("s3://"):
        raise ConfigError(
            "rewrap retire writes its evidence under REWRAP_REPORT_PREFIX (s3://bucket/prefix): set it, or "
            "pass --reports s3://bucket/prefix"
        )
    location = SweepTarget.parse(report_prefix)
    folder = location.prefix.strip("/")
    inner = f"{FOLDER}/{key_tag}/"
    return SweepTarget(location.bucket, f"{folder}/{inner}" if folder else inner)


def write_evidence(store: ObjectStore, report_prefix: str, evidence: Evidence) -> dict[str, str]:
    """Write the census data, the JSON record and the page; their s3:// URLs by name (json, page, data-N)."""
    folder = evidence_folder(report_prefix, evidence.key_tag)
    base = f"{folder.prefix}{evidence.ident}-{evidence.outcome.replace(' ', '-')}"
    locations: dict[str, str] = {}
    for n, verdict in enumerate(evidence.verdicts, 1):
        suffix = "census.jsonl" if verdict.run_id is None else "run-manifest.txt"
        key = f"{base}-{n}-{suffix}"
        store.put_new(folder.bucket, key, verdict.data, "text/plain; charset=utf-8")
        locations[f"data-{n}"] = f"s3://{folder.bucket}/{key}"
    record = evidence.to_dict(locations)
    store.put_new(folder.bucket, f"{base}.json", json.dumps(record, indent=2).encode(), "application/json")
    locations["json"] = f"s3://{folder.bucket}/{base}.json"
    store.put_new(folder.bucket, f"{base}.md", render_page(record).encode(), "text/markdown; charset=utf-8")
    locations["page"] = f"s3://{folder.bucket}/{base}.md"
    return locations


def render_page(record: dict[str, Any]) -> str:
    """The record as a page a person reads (Markdown)."""
    key = record["key"]
    title = {"retire": "Retirement", "undo": "Undo of a retirement"}[record["action"]]
    lines = [
        f"# {title} of NCP KMS key versions: {record['outcome']}",
        "",
        f"- **Key**: `{key['tag']}` (state {key['stateBefore']} → {key['stateAfter'] or key['stateBefore']}; current "
        f"version v{key['currentVersionBefore']}), managed through {key['managedThrough']}",
        f"- **When**: {record['time']}",
        "- **Who**: " + ", ".join(f"{name} `{value}`" for name, value in record["who"].items() if value),
        f"- **Record**: `{record['id']}` ({RECORD_FORMAT})",
        "",
        "## Versions",
        "",
        "| version | before | after |",
        "|---|---|---|",
        *[f"| v{v['version']} | {v['before']} | {v['after']} |" for v in record["versions"]],
        "",
    ]
    if record["reasons"]:
        lines += ["## Why", "", *[f"- {reason}" for reason in record["reasons"]], ""]
    if record["consoleSteps"]:
        lines += ["## Do it in the NCP console", "", *[f"{n}. {s}" for n, s in enumerate(record["consoleSteps"], 1)]]
        lines.append("")
    for verdict in record["verdicts"]:
        lines += _verdict_section(verdict)
    lines += ["## What this evidence does not cover", "", *[f"- {item}" for item in record["notCovered"]], ""]
    return "\n".join(lines)


def _verdict_section(verdict: dict[str, Any]) -> list[str]:
    run = f" (run `{verdict['runId']}`, complete: {verdict['runComplete']})" if verdict["runId"] else ""
    rows = [
        f"| `{tag[:16]}…` | {version} | {counts['tokens']:,} | {counts['objects']:,} |"
        for tag, versions in verdict["countsPerVersion"].items()
        for version, counts in versions.items()
    ]
    exclusions = verdict["exclusions"]
    excluded = [*(f"prefix `{p}`" for p in exclusions["prefixes"]), *(f"suffix `{s}`" for s in exclusions["suffixes"])]
    return [
        f"## Verdict: {verdict['verdict']} for {verdict['source']}{run}",
        "",
        f"- census data read at {verdict['takenAt']}; the key's newest version then: v{verdict['newestVersion']}",
        f"- {verdict['objects']:,} objects; opaque {verdict['opaque']:,}, unreadable {verdict['unreadable']:,}; "
        f"noncurrent versions scanned: {verdict['versionsScanned']}",
        f"- excluded by the operator: {', '.join(excluded) or 'nothing'}",
        f"- census data: {verdict['data']['name']}, SHA-256 `{verdict['data']['sha256']}` at "
        f"{verdict.get('dataLocation') or '(not written: dry run)'}",
        *[f"- note: {note}" for note in verdict["notes"]],
        "",
        "| key tag | version | tokens | objects |",
        "|---|---|---|---|",
        *(rows or ["| — | — | 0 | 0 |"]),
        "",
        "```",
        *verdict["lines"],
        "```",
        "",
    ]
