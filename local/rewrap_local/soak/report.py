"""The soak's report: what was injected, retried and failed, and whether anything was lost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SoakReport:
    seed: int
    rounds: int
    objects: Counter[str] = field(default_factory=Counter)
    key_version: int = 1
    invocations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # "<class> <reason code>" of failed tasks/messages
    failure_examples: dict[str, str] = field(default_factory=dict)  # reason code -> the first reason seen
    kms_requests: Counter[str] = field(default_factory=Counter)
    final: Counter[str] = field(default_factory=Counter)
    problems: dict[str, str] = field(default_factory=dict)  # key -> "lost: …" / "corrupted: …" (first seen)
    leaks: list[str] = field(default_factory=list)
    checks: int = 0
    multipart_left: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(1 for p in self.problems.values() if p.startswith("lost"))

    @property
    def corrupted(self) -> int:
        return sum(1 for p in self.problems.values() if p.startswith("corrupted"))

    @property
    def stranded(self) -> int:
        """Objects still under an old key version after the round converged."""
        return self.final["pending"]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.corrupted == 0 and self.stranded == 0 and not self.leaks

    def render(self) -> str:
        def line(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "none"

        faults_by_area: dict[str, Counter[str]] = {}
        for name, count in self.faults.items():
            area, _, kind = name.partition(":")
            faults_by_area.setdefault(area, Counter())[kind] += count
        lines = [
            f"rewrap soak — seed {self.seed}, {sum(self.objects.values())} objects, {self.rounds} rounds "
            f"(key rotated to v{self.key_version}), {self.seconds:.0f} s",
            f"objects: {line(self.objects)}",
            f"invocations: {line(self.invocations)}",
            f"KMS requests: {line(self.kms_requests)}",
            f"faults injected: {sum(self.faults.values())}",
            *(f"  {area}: {line(kinds)}" for area, kinds in sorted(faults_by_area.items())),
            f"retries: {line(self.retries)}",
            f"failures reported: {line(self.failures)}",
            f"checks: {self.checks} (every object after every run)",
            f"final: {line(self.final)}; multipart uploads left by crashes: {self.multipart_left}",
            f"lost: {self.lost}, corrupted: {self.corrupted}, stranded: {self.stranded}, "
            f"leaks in output: {len(self.leaks)}",
            *(f"  {key!r}: {problem}" for key, problem in list(self.problems.items())[:20]),
            *(f"  leak: {leak}" for leak in self.leaks),
            "OK" if self.ok else "FAILED",
        ]
        return "\n".join(lines)
