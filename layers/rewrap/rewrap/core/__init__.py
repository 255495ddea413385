"""The core: the rotation engine and its parts, the scanner, events, the census and the use cases. It depends on
ports, never on an adapter or an SDK."""
