"""The Lambda entry points and the composition root that builds the adapters."""
