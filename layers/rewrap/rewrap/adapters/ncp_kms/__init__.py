"""The NCP KMS client (the Rewrapper port): crypto operations, batching, transport and reply validation."""
