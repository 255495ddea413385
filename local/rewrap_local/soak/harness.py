"""The soak: set-up and restore, rounds of fault phases, one invocation of the real handler, convergence
and the checks, and the search for leaks."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewrap.app.runtime import Runtime, get_runtime, reset_runtime
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.stack import LocalStack, environment

from .application import Application
from .arming import arm
from .corpus import Corpus, Verdict
from .delivery import Delivery
from .plan import FAULT_KINDS, PLAINTEXT_RE, SIGNATURE_RE, SOAK_ENVIRONMENT, plan_phases, plan_slices
from .report import SoakReport
from .s3faults import S3Faults, SimulatedCrash


@dataclass
class SoakConfig:
    objects: int = 400
    rounds: int = 4
    seed: int = 1
    large_objects: int | None = None  # default: one per 60 objects, at least two
    tasks_per_invocation: int = 4  # S3 Batch Operations tasks per invocation
    capture_output: bool = False  # keep the handlers' logs and metrics and search them for leaks
    progress: Callable[[str], None] | None = None  # told about every phase
    environment: dict[str, str] = field(default_factory=dict)  # on top of SOAK_ENVIRONMENT
    faults: tuple[str, ...] = FAULT_KINDS  # the kinds the rounds draw from
    write_backs: int = 6  # objects the application writes back with cached tokens, each round


class Soak(Delivery):
    """Use as a context manager around a provisioned stack: sets the soak's environment, seeds the
    bucket, and restores everything on exit."""

    def __init__(self, stack: LocalStack, config: SoakConfig) -> None:
        self.stack = stack
        self.config = config
        self.rng = random.Random(config.seed)
        self.sqs = stack.client("sqs")
        self.secrets = stack.client("secretsmanager")
        self.report = SoakReport(config.seed, config.rounds)
        self.transcript = io.StringIO()
        self.outputs: list[str] = []  # reprs of every response and exception the handler produced
        self.responses: list[dict[str, Any]] = []  # every response, in order
        self.kms_headers: list[dict[str, str]] = []  # every KMS request's headers
        self.credentials: list[dict[str, str]] = []  # every NCP secret value in use during the run
        self._good_secret: dict[str, str] = {}
        self._invocation_faults: list[str] = []
        self._failed_tasks: list[str] = []
        self._tasks = 0
        self._exit = contextlib.ExitStack()
        self._kms_hooked: set[int] = set()
        self.invoking = False  # a handler invocation is running (see ``during_invocations``)
        self.corpus: Corpus
        self.s3_faults: S3Faults
        self.application: Application

    # --- setup -------------------------------------------------------------------------------------
    def __enter__(self) -> Soak:
        from aws_lambda_powertools.utilities import parameters

        self._exit.enter_context(
            environment({**self.stack.environment(), **SOAK_ENVIRONMENT, **self.config.environment})
        )
        self._exit.callback(reset_runtime)
        if self.config.capture_output:
            self._exit.enter_context(_captured(self.transcript))
        parameters.clear_caches()
        reset_runtime()
        value = self.secrets.get_secret_value(SecretId=self.stack.secret_id)["SecretString"]
        self._good_secret = json.loads(value)
        self.credentials.append(dict(self._good_secret))
        self.corpus = Corpus(self.stack, self.stack.kms.create_key(convergent=True), self.rng)
        self.s3_faults = S3Faults(self.corpus)
        large = self.config.large_objects
        large = max(2, self.config.objects // 60) if large is None else large
        self.corpus.seed(self.config.objects, large)
        self.report.objects.update(o.kind for o in self.corpus.originals.values())
        self.application = Application(self.corpus, self.rng)
        self.application.cache()
        self.s3_faults.application = self.application
        return self

    def __exit__(self, *exc: object) -> None:
        kms = self.stack.kms
        kms.clear_faults()
        kms.set_latency(0)
        if self.credentials:  # the stack's own secret and access key, as they were
            first = self.credentials[0]
            kms.add_credentials(first["accessKey"], first["secretKey"], first.get("apiKey"))
            self.put_secret(first)
        self._exit.close()

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> SoakReport:
        started = time.perf_counter()
        emulator_before = self.stack.kms.stats.snapshot()
        for round_no in range(self.config.rounds):
            self.run_round(round_no)
        emulator_after = self.stack.kms.stats.snapshot()
        for action, count in emulator_after["requests"].items():
            self.report.kms_requests[action] += count - emulator_before["requests"].get(action, 0)
        self.report.retries["kms auth refreshes"] += emulator_after["auth_failures"] - emulator_before["auth_failures"]
        self.report.faults.update(self.s3_faults.injected)
        self.report.retries["s3 (botocore)"] = self.s3_faults.retries
        self.report.key_version = self.stack.kms.current_version(self.stack.key_tag)
        uploads = self.corpus.s3.list_multipart_uploads(Bucket=self.stack.bucket).get("Uploads", [])
        self.report.multipart_left = len(uploads)
        if self.config.capture_output:
            self.report.leaks = self.find_leaks(self.transcript.getvalue() + "\n".join(self.outputs))
        self.report.seconds = time.perf_counter() - started
        return self.report

    def rotate_keys(self) -> None:
        self.stack.kms.rotate(self.stack.key_tag)
        self.stack.kms.rotate(self.corpus.convergent_tag)

    def run_round(self, round_no: int) -> None:
        self.rotate_keys()
        keys = sorted(self.corpus.keys())  # seeding order varies with threads; slices must not
        phases = plan_phases(self.rng, self.config.faults, round_no)
        slices = plan_slices(self.rng, self.corpus.originals, keys, phases)
        for index, (faults, slice_) in enumerate(zip(phases, slices, strict=True)):
            route = "sqs" if (index + round_no) % 2 == 0 else "batch-ops"
            self.run_phase(faults, slice_, route)
        if self.config.write_backs:
            self.write_back(self.config.write_backs)
        self.converge()

    def write_back(self, count: int) -> None:
        """The application writes back tokens it cached before the key rotated, under the stamps of rewrap's last
        write; the next sweep sends their keys with the key's newest version to a container that keeps it (the
        default REWRAP_VERSION_CACHE_SECONDS), which may answer from a stamp. Each must end on the newest version."""
        keys = self.application.write_back(count)
        self.report.faults["app:write-back"] += len(keys)
        newest = {tag: self.stack.kms.current_version(tag) for tag in (self.stack.key_tag, self.corpus.convergent_tag)}
        bodies = [
            json.dumps({"bucket": self.stack.bucket, "keys": keys[start : start + 4], "newestVersions": newest})
            for start in range(0, len(keys), 4)
        ]
        with environment({"REWRAP_VERSION_CACHE_SECONDS": "60"}):
            self.cold_start()
            for start in range(0, len(bodies), 10):
                entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
                self.sqs.send_message_batch(QueueUrl=self.stack.queue_url, Entries=entries)
            self.drain()
        self.cold_start()  # back to containers that ask NCP every time (SOAK_ENVIRONMENT)
        self.check()

    def run_phase(self, faults: Sequence[str], keys: list[str], route: str) -> None:
        kms = self.stack.kms
        started = time.perf_counter()
        before = kms.stats.snapshot()["faults_injected"]
        restore_secret = False
        for fault in faults:
            restore_secret |= arm(self, fault)
        try:
            if route == "sqs":
                self.deliver_sqs(keys)
            else:
                self.deliver_batch_operations(keys)
        finally:
            kms.clear_faults()
            kms.set_latency(0)
            self.s3_faults.clear()
            self._invocation_faults.clear()
            if restore_secret:  # the cause of the permanent failures is fixed; converge() re-runs them
                self.put_secret(self._good_secret)
        after = kms.stats.snapshot()["faults_injected"]
        for kind, count in after.items():
            if count - before.get(kind, 0):
                self.report.faults[f"kms:{kind}"] += count - before.get(kind, 0)
        self.check()
        if self.config.progress is not None:
            seconds = time.perf_counter() - started
            self.config.progress(f"  {'+'.join(faults):<60} {route:<9} {len(keys):>4} objects {seconds:5.1f} s")

    # --- secrets -----------------------------------------------------------------------------------
    def put_secret(self, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.secrets.put_secret_value(SecretId=self.stack.secret_id, SecretString=text)

    def rotate_secret(self) -> None:
        """A new access key goes into the secret and the emulator; the old one stops working at once."""
        old = self._good_secret
        new = {
            "accessKey": f"soak-ak-{self.rng.getrandbits(64):016x}",
            "secretKey": f"soak-sk-{self.rng.getrandbits(128):032x}",
            "apiKey": f"soak-api-{self.rng.getrandbits(64):016x}",
        }
        self.put_secret(new)
        self.stack.kms.add_credentials(new["accessKey"], new["secretKey"], new["apiKey"])
        self.stack.kms.remove_credentials(old["accessKey"])
        self._good_secret = new
        self.credentials.append(dict(new))
        self.report.faults["secret:rotated"] += 1

    def cold_start(self) -> None:
        from aws_lambda_powertools.utilities import parameters

        reset_runtime()
        parameters.clear_caches()
        self.report.invocations["cold starts"] += 1

    # --- one invocation ------------------------------------------------------------------------------
    def queue_invocation_fault(self, kind: str) -> None:
        """``crash``, ``out-of-time`` or ``secrets-unreachable`` for the next invocation without one."""
        if kind not in ("crash", "out-of-time", "secrets-unreachable"):
            raise ValueError(f"unknown invocation fault {kind!r}")
        self._invocation_faults.append(kind)

    def invoke(self, event: dict[str, Any], route: str) -> dict[str, Any] | None:
        """The real rotate handler, with this invocation's faults; None when it crashed."""
        from rewrap.app.handlers import rotate as lambda_handler

        fault = self._invocation_faults.pop(0) if self._invocation_faults else None
        context = LambdaContext()
        overrides: dict[str, str] = {}
        if fault == "out-of-time":  # 1.5-3.5 s left after the reserve, while KMS answers slowly
            context = LambdaContext(timeout_seconds=self.rng.uniform(6.5, 8.5))
            self.stack.kms.set_latency(0.4, 1.0)
            self.report.faults["invocation:out-of-time"] += 1
        elif fault == "secrets-unreachable":
            overrides["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = f"http://127.0.0.1:{_closed_port()}"
            context = LambdaContext(timeout_seconds=9.0)  # bounded: every fetch fails after retries
            self.cold_start()
            self.report.faults["secret:unreachable"] += 1
        elif fault == "crash":
            self.s3_faults.arm_crash(self.rng.randint(1, 8))  # stays armed into later invocations
        self.report.invocations[route] += 1
        crashed = False
        with environment(overrides):
            runtime = get_runtime()
            self._hook(runtime)
            kms_before = runtime.kms.stats.snapshot()
            self.invoking = True
            try:
                response = lambda_handler(event, context)
                self.outputs.append(repr(response))
                self.responses.append(response)
            except SimulatedCrash as crash:
                self.outputs.append(repr(crash))
                response, crashed = None, True
            finally:
                self.invoking = False
                self.report.retries["kms (client)"] += runtime.kms.stats.retries - kms_before["retries"]
                self.s3_faults.revive()
                self.stack.kms.set_latency(0)
        if crashed:
            self.report.invocations["crashed"] += 1
            self.cold_start()  # the sandbox is gone
        if fault == "secrets-unreachable":
            self.cold_start()  # Secrets Manager is back for the next container
        return response

    def _hook(self, runtime: Runtime) -> None:
        self.s3_faults.attach(runtime.s3)
        if id(runtime.kms.http) not in self._kms_hooked:
            self._kms_hooked.add(id(runtime.kms.http))
            runtime.kms.http.event_hooks["request"].append(self._kms_request)

    def _kms_request(self, request: Any) -> None:
        self.kms_headers.append({name.lower(): value for name, value in request.headers.items()})

    # --- convergence and checks ----------------------------------------------------------------------
    def converge(self, max_passes: int = 8) -> None:
        """Re-run what failed (the causes are fixed by now) until nothing is left to re-run."""
        for _ in range(max_passes):
            parked = self._redrive()
            tasks, self._failed_tasks = self._failed_tasks, []
            if not parked and not tasks:
                break
            self.report.retries["dlq redrives"] += parked
            self.report.retries["batch-ops re-run tasks"] += len(tasks)
            self.drain()
            if tasks:
                self.deliver_batch_operations(tasks)
        verdicts = self.check()
        self.report.final = Counter(v.state for v in verdicts)

    def _redrive(self) -> int:
        """Move the dead-letter queue's messages back to the rotate queue; how many moved."""
        moved = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.stack.dead_letter_queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                # Parked by rewrap with its reason, or moved by the queue's redrive policy.
                reason = message.get("MessageAttributes", {}).get("rewrap-failure", {}).get("StringValue")
                code = reason.split(":", 1)[0] if reason else "maxReceiveCount"
                self.report.failures[f"parked {code}"] += 1
                self.report.failure_examples.setdefault(code, reason or "moved by the queue's redrive policy")
                self.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=message["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.stack.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                moved += 1

    def check(self) -> list[Verdict]:
        verdicts = self.corpus.audit()
        self.report.checks += 1
        for verdict in verdicts:
            if verdict.state in ("lost", "corrupted"):
                self.report.problems.setdefault(verdict.key, f"{verdict.state}: {verdict.detail}")
        return verdicts

    # --- leaks -------------------------------------------------------------------------------------
    def during_invocations(self) -> logging.Filter:
        """A logging filter passing only records emitted while the handler runs (not the harness's
        own set-up calls, such as writing a new secret value)."""
        soak = self

        class _During(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                return soak.invoking

        return _During()

    def sensitive(self) -> dict[str, set[str]]:
        """What must never appear in any output, by kind (the values themselves are never printed)."""
        credentials = {v for c in self.credentials for v in c.values() if v}
        signatures = {v for h in self.kms_headers for n, v in h.items() if n.startswith("x-ncp-apigw-signature")}
        return {"credential": credentials, "signature": signatures, "plaintext": set(self.corpus.plaintexts)}

    def find_leaks(self, text: str) -> list[str]:
        """Which kinds of sensitive value occur in ``text`` (and how often), never the values."""
        sensitive = self.sensitive()
        leaks = []
        credentials = sum(1 for value in sensitive["credential"] if value in text)
        if credentials:
            leaks.append(f"{credentials} credential value(s)")
        signatures = len(set(SIGNATURE_RE.findall(text)) & sensitive["signature"])
        if signatures:
            leaks.append(f"{signatures} request signature(s)")
        plaintexts = len(PLAINTEXT_RE.findall(text))
        if plaintexts:
            leaks.append(f"{plaintexts} plaintext(s) or their base64")
        return leaks


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _captured(buffer: io.StringIO) -> Iterator[None]:
    """Send the handlers' log lines (Powertools' handler) and metrics (printed EMF) to ``buffer``."""
    from rewrap.observability import logger

    handler = logger.registered_handler
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def run_soak(stack: LocalStack, config: SoakConfig) -> SoakReport:
    with Soak(stack, config) as soak:
        return soak.run()
