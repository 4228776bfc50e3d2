"""Attack labels cover exactly the attack flows; attacks follow their plan (victim, window, ramp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from netflowgen.simulate import AttackConfig, simulate
from netflowgen.simulate.catalog import DDOS_SCENARIOS
from tests.simulate.conftest import read, small_config


def attacks_csv(folder: Path) -> pl.DataFrame:
    return pl.read_csv(folder / "attacks.csv").with_columns(
        pl.col("start").str.to_datetime(time_zone="UTC"), pl.col("end").str.to_datetime(time_zone="UTC")
    )


def test_benign_flows_do_not_change_with_the_attacks(small_dataset: Path, tmp_path: Path) -> None:
    quiet = tmp_path / "quiet"
    simulate(small_config(attacks=AttackConfig(count=0, scans=0)), quiet)
    without = read(quiet)
    with_attacks = read(small_dataset)
    assert set(without["label"].unique().to_list()) == {"benign"}
    assert with_attacks.filter(pl.col("label") == "benign").equals(without)
    assert with_attacks.height > without.height + 1000
    assert pl.read_csv(quiet / "attacks.csv").height == 0


def test_every_attack_flow_hits_its_victim_inside_its_window(small_dataset: Path) -> None:
    flows = read(small_dataset)
    plan = attacks_csv(small_dataset)
    assert plan["scenario"].to_list() == [*DDOS_SCENARIOS, "port-scan"]
    assert plan["label"].to_list() == ["DDoS"] * 4 + ["scan"]
    nodes = set(pl.read_csv(small_dataset / "nodes.csv")["node"].to_list())
    assert set(plan["victim"].to_list()) <= nodes

    assert set(flows["label"].unique().to_list()) == {"benign", "DDoS", "scan"}
    assert flows.filter(pl.col("label") == "benign")["label_detail"].null_count() == flows.filter(pl.col("label") == "benign").height
    labeled = flows.filter(pl.col("label") != "benign").with_columns(
        pl.col("source_file").str.extract(r"attack-(\d+)/", 1).cast(pl.Int64).alias("attack_id")
    )
    assert labeled["attack_id"].null_count() == 0
    joined = labeled.join(plan, on="attack_id", suffix="_plan")
    assert joined.height == labeled.height
    assert (joined["label"] == joined["label_plan"]).all()
    assert (joined["label_detail"] == joined["scenario"]).all()
    assert (joined["dst_ip"] == joined["victim"]).all()
    assert (joined["ts_start"] >= joined["start"]).all() and (joined["ts_start"] < joined["end"]).all()
    # attacks.csv counts what is in the files.
    per_attack = dict(labeled.group_by("attack_id").len().iter_rows())
    assert per_attack == dict(zip(plan["attack_id"], plan["flows"]))
    # Sources: spoofed floods use a fresh address per flow, reflectors a fixed set from their port.
    by = {row["scenario"]: row for row in plan.iter_rows(named=True)}
    syn = joined.filter(pl.col("scenario") == "syn-flood")
    assert syn["src_ip"].n_unique() == syn.height and (syn["dst_port"] == by["syn-flood"]["victim_port"]).all()
    assert set(syn["tcp_flags"].unique().to_list()) <= {2, 18}
    for name, port in (("dns-reflection", 53), ("ntp-reflection", 123)):
        refl = joined.filter(pl.col("scenario") == name)
        assert (refl["src_port"] == port).all() and (refl["proto"] == 17).all()
        assert refl["src_ip"].n_unique() <= by[name]["sources"]
    assert (joined.filter(pl.col("scenario") == "icmp-flood")["proto"] == 1).all()
    scan = joined.filter(pl.col("scenario") == "port-scan")
    assert scan["src_ip"].n_unique() == 1 and scan["dst_port"].n_unique() > scan.height * 0.9


def test_attack_rate_ramps_up_then_holds(tmp_path: Path) -> None:
    # No per-second noise: the flows of a window are Poisson with a mean known from the plan.
    attacks = AttackConfig(count=1, scenarios=("dns-reflection",), duration_s=(1200.0, 1200.0), ramp_s=(600.0, 600.0),
                           peak_flows_per_s=(40.0, 40.0), sources=(20.0, 20.0), noise=0.0, scans=0)
    out = tmp_path / "ramp"
    simulate(small_config(attacks=attacks), out)
    plan = attacks_csv(out).row(0, named=True)
    start = plan["start"].timestamp()
    times = read(out).filter(pl.col("label") == "DDoS")["ts_start"].dt.epoch("us").to_numpy() / 1e6 - start
    seconds = np.arange(1200) + 0.5
    rate = 40.0 * np.clip(seconds / 600.0, 0, 1)
    for lo, hi in ((0, 150), (150, 300), (300, 450), (450, 600), (600, 900), (900, 1200)):
        mean = rate[lo:hi].sum()
        got = int(((times >= lo) & (times < hi)).sum())
        assert abs(got - mean) < 5 * np.sqrt(mean), (lo, hi, got, mean)


def test_unidirectional_records_split_each_connection(small_dataset: Path, tmp_path: Path) -> None:
    uni_dir = tmp_path / "uni"
    simulate(small_config(bidirectional=False), uni_dir)
    bi, uni = read(small_dataset), read(uni_dir)
    assert (uni["rev_packets"] == 0).all() and (uni["rev_bytes"] == 0).all()
    assert uni.height == bi.height + bi.filter(pl.col("rev_packets") > 0).height
    for label in ("benign", "DDoS", "scan"):
        a, b = bi.filter(pl.col("label") == label), uni.filter(pl.col("label") == label)
        assert int(a["fwd_packets"].sum() + a["rev_packets"].sum()) == int(b["fwd_packets"].sum())
        assert int(a["fwd_bytes"].sum() + a["rev_bytes"].sum()) == int(b["fwd_bytes"].sum())
    # A refused SYN becomes a SYN and a RST|ACK record; answers come from the responder.
    refused = uni.filter((pl.col("proto") == 6) & (pl.col("tcp_flags") == 20))
    assert refused.height > 0 and (refused["fwd_packets"] == 1).all() and (refused["fwd_bytes"] == 40).all()
    summary = pl.read_csv(uni_dir / "attacks.csv")["flows"].sum()
    assert summary == uni.filter(pl.col("label") != "benign").height


def test_attack_windows_lie_in_the_span(small_dataset: Path) -> None:
    plan = attacks_csv(small_dataset)
    config = small_config()
    assert (plan["start"] >= config.start).all() and (plan["end"] <= config.end).all()
    assert (plan["end"] > plan["start"]).all()
