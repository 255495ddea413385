"""Adapters: the ports of rewrap.core.ports implemented on S3, SQS, Secrets Manager and NCP KMS."""
