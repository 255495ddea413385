"""This tier runs against the embedded stack: moto (or LocalStack) and the NCP KMS emulator on loopback."""

from tests.stack_fixtures import *  # noqa: F403  (the fixtures, by name)
