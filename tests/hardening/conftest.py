"""Fixtures of the hardening tests: the hub acceptance tests' hub factories, reused."""

from tests.hub.conftest import make_hub, quick_hub

__all__ = ["make_hub", "quick_hub"]
