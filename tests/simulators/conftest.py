"""The e2e suite's ``pipeline`` fixture (real bridge and enricher processes), for the fleet's tests."""

from tests.e2e.conftest import pipeline  # noqa: F401
