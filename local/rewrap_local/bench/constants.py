"""Names and sizes shared by the bench's modules (the region and the loopback credentials are the
demo stack's, in ``rewrap_local.stack``)."""

from __future__ import annotations

from pathlib import Path

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[3]
BUCKET = "rewrap-bench"
DATA_KEY_BYTES = 32  # what a token wraps: an AES-256 data key → a 90-character token
WRAPPED_KEY_METADATA = "wrapped-key"
TARGET_PEAK_MIB = 256
