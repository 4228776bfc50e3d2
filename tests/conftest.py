"""Shared test settings: where the real captures are, and the fixtures every test folder uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "read" / "fixtures"


def shared_data_dir() -> Path:
    """The real captures: NETFLOWGEN_SHARED_DATA, or ../shared/data beside the repository."""
    return Path(os.environ.get("NETFLOWGEN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        if os.environ.get("NETFLOWGEN_REQUIRE_SHARED_DATA"):
            pytest.fail(f"real captures required but not found at {path}")
        pytest.skip(f"real captures not found at {path} (set NETFLOWGEN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
