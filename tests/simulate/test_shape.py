"""Benign flows per node and hour follow each role's daily and weekly shape.

Per role and hour the count is a sum of independent Poisson counts (mean: the node's rate times
its role's shape) plus the periodic flows, whose count per node and hour is within 1 of their
mean rate and has a variance of at most 1/4 (uniform phase). So the observed count lies within
Z standard deviations of the expectation, with variance <= mean + periodic nodes / 4; Z = 5 over
the 3 x 168 cells of a week leaves a chance of about 3e-4 that a correct generator fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netflowgen.simulate import AttackConfig, RoleConfig, Shape, SimConfig, simulate
from netflowgen.simulate.benign import hour_of_week
from tests.simulate.conftest import read

Z = 5.0

#: Sharp shapes, so that a generator ignoring them would fail by far (checked below).
NIGHT_OWL = Shape(daily=tuple(3.0 if h < 6 else 0.2 for h in range(24)), weekly=(1, 1, 1, 1, 1, 4, 4))
ROLES = (
    RoleConfig("client", 0.6, 1.0, SimConfig().roles[0].shape, (("https", 3), ("dns", 1))),
    RoleConfig("server", 0.2, 2.0, NIGHT_OWL, (("https-in", 1), ("ssh-in", 1))),
    RoleConfig("iot", 0.2, 1.0, Shape(daily=tuple(1.0 + (h % 2) for h in range(24))), (("dns", 1), ("coap", 1)),
               periodic_share=0.5, periodic_service="mqtt-tls"),
)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimConfig, Path]:
    config = SimConfig(nodes=120, hours=168, start="2026-01-05", seed=11, flows_per_node_hour=6.0, roles=ROLES,
                       attacks=AttackConfig(count=0, scans=0), utc_offset_hours=2, nodes_per_chunk=64)
    out = tmp_path_factory.mktemp("week") / "flows"
    simulate(config, out)
    return config, out


def observed_and_expected(config: SimConfig, out: Path) -> tuple[pl.DataFrame, dict[str, np.ndarray], dict[str, float]]:
    nodes = pl.read_csv(out / "nodes.csv")
    flows = read(out)
    local = flows.with_columns(
        pl.when(pl.col("src_ip").is_in(nodes["node"].implode())).then(pl.col("src_ip")).otherwise(pl.col("dst_ip")).alias("node"),
        pl.col("ts_start").dt.truncate("1h").alias("hour"),
    )
    counts = local.join(nodes.select("node", "role"), on="node").group_by("role", "hour").len()
    first = int(config.start.timestamp()) // 3600
    expected: dict[str, np.ndarray] = {}
    slack: dict[str, float] = {}
    for role in config.roles:
        members = nodes.filter(pl.col("role") == role.name)
        rate = float(members["mean_flows_per_hour"].sum())
        shape = role.shape.week()[[hour_of_week(first + k, config.utc_offset_hours) for k in range(config.hours)]]
        expected[role.name] = rate * ((1 - role.periodic_share) * shape + role.periodic_share)
        slack[role.name] = members["period_s"].is_not_null().sum() / 4
    return counts, expected, slack


def test_flows_per_role_and_hour_follow_the_daily_and_weekly_shapes(week: tuple[SimConfig, Path]) -> None:
    config, out = week
    counts, expected, slack = observed_and_expected(config, out)
    hours = pl.datetime_range(config.start, config.end, "1h", closed="left", eager=True).alias("hour")
    checked = 0
    for role in config.roles:
        got = pl.DataFrame(hours).join(counts.filter(pl.col("role") == role.name), on="hour", how="left")["len"].fill_null(0).to_numpy()
        exp = expected[role.name]
        sd = np.sqrt(exp + slack[role.name])
        worst = np.max(np.abs(got - exp) / sd)
        assert worst < Z, f"{role.name}: an hour is {worst:.1f} sd from its expected count"
        # The test can fail: the same counts against a flat shape of the same total are far off.
        flat = np.full(len(exp), exp.sum() / len(exp))
        if role.name != "iot":
            assert np.max(np.abs(got - flat) / np.sqrt(flat + slack[role.name])) > 3 * Z
        checked += len(exp)
    assert checked == 3 * 168


def test_iot_periodic_flows_keep_their_period(week: tuple[SimConfig, Path]) -> None:
    _, out = week
    nodes = pl.read_csv(out / "nodes.csv").filter(pl.col("role") == "iot")
    flows = read(out).filter(pl.col("dst_port") == 8883)
    node = nodes.row(0, named=True)
    starts = flows.filter(pl.col("src_ip") == node["node"]).sort("ts_start")["ts_start"]
    gaps = starts.diff().drop_nulls().dt.total_microseconds().to_numpy() / 1e6
    # Every gap is the node's period (to the microsecond the timestamps are floored to); one peer.
    assert len(gaps) >= 168 * 3600 / node["period_s"] - 2
    assert np.abs(gaps - node["period_s"]).max() < 2e-6
    assert flows.filter(pl.col("src_ip") == node["node"])["dst_ip"].n_unique() == 1
