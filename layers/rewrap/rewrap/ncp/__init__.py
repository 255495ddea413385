"""NCP KMS adapter: request signing, the HTTP client and its error mapping."""
