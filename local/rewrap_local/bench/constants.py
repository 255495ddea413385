"""Names and sizes shared by the bench's modules."""

from __future__ import annotations

from pathlib import Path

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[3]
BUCKET = "rewrap-bench"
REGION = "ap-northeast-2"
FAKE_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}
# Loopback-only credentials of the emulator (the same as the demo stack's).
ACCESS_KEY, SECRET_KEY, API_KEY = "local-access-key", "local-secret-key", "local-api-key"
DATA_KEY_BYTES = 32  # what a token wraps: an AES-256 data key → a 90-character token
WRAPPED_KEY_METADATA = "wrapped-key"
TARGET_PEAK_MIB = 256
