"""Each size's bucket of mixed objects and its queues, with tokens made by the emulator before and
after the key's rotation."""

from __future__ import annotations

import json
import random

from ..datasets import Item, TokenPool, mixed_items
from ..harness import _pseudo_random
from .params import ENVELOPE_BYTES, PREFIX, WARMUP, WARMUP_PER_CONTAINER, FleetParams, Seeded
from .stack import FleetStack


class Seeder:
    def __init__(self, stack: FleetStack, params: FleetParams) -> None:
        self.stack = stack
        self.params = params
        self.pool = TokenPool()
        self.envelope_body = _pseudo_random(ENVELOPE_BYTES)

    def make_tokens(self) -> None:
        """Every size's tokens: the old ones before the key's rotation, the current ones after it."""
        kms, key_tag = self.stack.kms, self.stack.key_tag
        counting = TokenPool()
        for size in self.params.sizes:
            self.items(size, counting)
        self.pool.old = kms.call("encrypt", key_tag, counting.wanted[False])
        kms.call("rotate", key_tag)
        self.pool.new = kms.call("encrypt", key_tag, counting.wanted[True])

    def items(self, size: int, pool: TokenPool) -> tuple[list[Item], list[Item]]:
        """The measured objects and the warm-up objects of one size (the same for a seed)."""
        rng = random.Random(self.params.seed + size)
        items = mixed_items(size, pool, rng, prefix=PREFIX, envelope_bytes=ENVELOPE_BYTES)
        warmup = mixed_items(WARMUP_PER_CONTAINER * self.params.workers, pool, rng, prefix=WARMUP)
        return items, warmup

    def seed(self, size: int) -> Seeded:
        items, warmup = self.items(size, self.pool)
        bucket = f"rewrap-fleet-{size}"
        self.stack.create_bucket(bucket)

        objects = [
            (i.key, self.envelope_body if i.envelope else i.body, i.content_type, i.metadata) for i in items + warmup
        ]
        for start in range(0, len(objects), 2000):  # straight into moto's backend: seconds, not minutes
            self.stack.moto.call("seed", bucket, objects[start : start + 2000])
        sqs = self.stack.sqs
        dlq = sqs.create_queue(QueueName=f"{bucket}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        queue = sqs.create_queue(QueueName=bucket, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        return Seeded(size, bucket, items, queue, dlq, warmup)
