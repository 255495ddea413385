"""rewrap: keep NCP KMS ciphertexts stored in Amazon S3 on the newest key version."""

__version__ = "0.1.0"
