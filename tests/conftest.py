"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubproc import HubProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
