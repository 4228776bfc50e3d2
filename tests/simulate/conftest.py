"""Small simulations the simulator's tests share."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from netflowgen.dataset.manifest import scan_flows
from netflowgen.simulate import AttackConfig, SimConfig

#: Attacks small enough for tests: a few thousand flows each.
SMALL_ATTACKS = AttackConfig(count=4, duration_s=(60.0, 300.0), ramp_s=(5.0, 60.0), peak_flows_per_s=(2.0, 10.0),
                             sources=(5.0, 50.0), scans=1, scan_duration_s=(30.0, 60.0), scan_probes_per_s=(2.0, 5.0))


def small_config(**changes: object) -> SimConfig:
    """60 nodes, 6 hours from Monday 06:00, some 10,000 benign flows, four attacks and a scan."""
    base = SimConfig(nodes=60, hours=6, start="2026-01-05T06:00", seed=7, flows_per_node_hour=30.0,
                     attacks=SMALL_ATTACKS, nodes_per_chunk=25)
    return base.with_(**changes)


def read(path: Path) -> pl.DataFrame:
    return scan_flows(path).collect()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netflowgen.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "flows"
    simulate(small_config(), out)
    return out
