"""A Lambda context object for running the real handlers outside Lambda."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    function_name: str = "rewrap-rotate"
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 900.0
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-2:123456789012:function:rewrap-rotate"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/rewrap-rotate"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
