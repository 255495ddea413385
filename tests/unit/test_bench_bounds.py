"""The bench's least time a run can take on this machine: what its figures say the CPUs or KMS allow."""

from __future__ import annotations

from rewrap_local.bench.verdicts import least_seconds

PARAMS = {"concurrency": 16, "kms_latency_ms": (20.0, 40.0)}


def test_a_run_whose_processes_need_more_cpu_than_the_cpus_give_is_bound_by_cpu() -> None:
    run = {"rewrap": {"cpu_s": {"self": 0.55, "moto": 0.85, "kms": 0.0}, "re-encrypt_requests": 1}}
    assert least_seconds(run, PARAMS, cpus=2) == (0.7, "CPU")


def test_a_run_of_many_kms_requests_is_bound_by_their_waves_at_the_lowest_latency() -> None:
    # 83 requests, 16 at a time: 6 waves of at least 20 ms
    run = {"rewrap": {"cpu_s": {"self": 0.1, "moto": 0.02, "kms": 0.1}, "re-encrypt_requests": 83}}
    assert least_seconds(run, PARAMS, cpus=2) == (0.12, "6 KMS waves")
