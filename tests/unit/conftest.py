"""No server and no network in this tier (tests/no_network.py)."""

from tests.no_network import no_network  # noqa: F401  (an autouse fixture)
