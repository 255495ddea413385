"""NCP KMS as data, shared by the client (rewrap.adapters.ncp_kms) and the emulator: the API generations,
regions, error codes, assumptions and request signing. No I/O here."""
