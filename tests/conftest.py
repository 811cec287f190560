"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.hubproc import HubProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Hypothesis profiles, loaded here so that settings objects built when test modules are
# imported inherit from them. "ci", the default: the same examples on every run and
# machine (a seed derived from each test), no example database, no timing-based checks.
# "fuzz", for long runs by hand (docs/reliability.md): fresh random examples each run,
# failures kept in .hypothesis/ (git-ignored) and replayed first. A test's own @settings
# win for the keys they set. HYPOTHESIS_PROFILE or --hypothesis-profile picks one.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "fuzz", max_examples=2000, derandomize=False, deadline=None, print_blob=True,
    database=DirectoryBasedExampleDatabase(
        Path(__file__).resolve().parent.parent / ".hypothesis" / "examples"),
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def require_program(name: str, package: str) -> str:
    """Path of ``name``; skip (fail under CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install the {package!r} package (apt-get install {package})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A real hub process for one test."""
    process = HubProcess(tmp_path).start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A real hub process shared by the tests of one module."""
    process = HubProcess(tmp_path_factory.mktemp("hub")).start()
    try:
        yield process
    finally:
        process.kill()
