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


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    """One local Spark session for every Spark test (starting one costs seconds): two cores,
    few shuffle partitions, no web UI. Without pyspark or Java the tests skip, unless
    NETFLOWGEN_REQUIRE_SPARK is set (scripts/test.sh installs both and sets it)."""
    import shutil

    missing = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing = "pyspark is not installed (pip install -e '.[spark]')"
    if missing is None and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing = "java is not installed (Debian package openjdk-17-jre-headless)"
    if missing:
        if os.environ.get("NETFLOWGEN_REQUIRE_SPARK"):
            pytest.fail(f"Spark tests required but {missing}")
        pytest.skip(missing)
    from netflowgen.series.spark import spark_session

    session = spark_session("local[2]", shuffle_partitions=4, conf={
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
        "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
    })
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
