"""What one sweep → queue → rotate-containers run did, and its figures."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Phase:
    """What one sweep → queue → rotate-containers run did, summed over its invocations."""

    mode: str
    objects: int
    seconds: float = 0.0
    sweep: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    kms: dict[str, int] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of moto and the emulator
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        calls = [self.sweep, *self.invocations]
        s3 = Counter[str]()
        sqs = Counter[str]()
        for call in calls:
            s3.update(call.get("s3", {}).get("ops", {}))
            sqs.update(call.get("sqs", {}).get("ops", {}))
            sqs.update(call.get("mapping", {}).get("ops", {}))
        peaks = [i["peak_bytes"] for i in self.invocations if "peak_bytes" in i]
        n = max(1, self.objects)
        kms_requests = sum(self.kms.values())
        return {
            "objects": self.objects,
            "seconds": round(self.seconds, 3),
            "objects_per_s": round(self.objects / self.seconds, 1) if self.seconds else 0.0,
            "ms_per_object": round(self.seconds * 1000 / n, 3),
            "messages": self.sweep.get("response", {}).get("messages", 0),
            "enqueued": self.sweep.get("response", {}).get("enqueued", 0),
            "scope": self.sweep.get("response", {}).get("scope", "full"),
            "invocations": len(self.invocations),
            "sweep_seconds": round(self.sweep.get("seconds", 0.0), 3),
            "sweep_peak_mib": round(self.sweep.get("peak_bytes", 0) / 2**20, 2),
            "s3_requests": sum(s3.values()),
            "s3_per_object": round(sum(s3.values()) / n, 4),
            "s3_ops": dict(sorted(s3.items())),
            "kms_requests": kms_requests,
            "kms_per_object": round(kms_requests / n, 4),
            "kms_ops": dict(sorted(self.kms.items())),
            "sqs_requests": sum(sqs.values()),
            "sqs_per_object": round(sum(sqs.values()) / n, 4),
            "bytes_read_per_object": round(sum(c.get("s3", {}).get("bytes_read", 0) for c in calls) / n, 1),
            "cpu_s": round(sum(c.get("cpu_s", 0.0) for c in calls), 2),
            # None: no invocation of this run landed on a container that traces memory
            "peak_mib_max": round(max(peaks) / 2**20, 2) if peaks else None,
            "peak_mib_median": round(statistics.median(peaks) / 2**20, 2) if peaks else None,
            "traced_invocations": sum("peak_bytes" in i for i in self.invocations),
            "server_cpu_s": self.server_cpu,
            "invocation_s_median": _median(i["seconds"] for i in self.invocations),
            "invocation_cpu_s_median": _median(i["cpu_s"] for i in self.invocations),
            "failed_items": sum(i.get("failed", 0) for i in self.invocations),
        }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(values: Iterable[float]) -> float:
    listed = list(values)
    return round(statistics.median(listed), 3) if listed else 0.0
