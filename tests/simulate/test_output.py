"""The simulator's output: deterministic, a valid flow dataset, self-describing and synthetic."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

import polars as pl
import pytest

from netflowgen.artifacts import read_manifest
from netflowgen.dataset.manifest import DATASET_KIND
from netflowgen.read.validate import check
from netflowgen.schema import FLOW_SCHEMA, arrow_schema
from netflowgen.simulate import SimConfig, simulate
from tests.simulate.conftest import read, small_config


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_does_not(small_dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate(small_config(), again)
    first = digests(small_dataset)
    assert sorted(first) == ["attacks.csv", "date=2026-01-05/part-00000.parquet", "netflowgen.json", "nodes.csv", "rejects.csv"]
    assert digests(again) == first

    other = tmp_path / "other"
    simulate(small_config(seed=8), other)
    changed = digests(other)
    assert all(changed[name] != first[name] for name in ("attacks.csv", "date=2026-01-05/part-00000.parquet", "nodes.csv"))
    a, b = read(small_dataset), read(other)
    assert a.select("src_ip", "dst_ip", "ts_start").head(100).to_dicts() != b.select("src_ip", "dst_ip", "ts_start").head(100).to_dicts()


def test_the_manifest_config_regenerates_the_same_dataset(small_dataset: Path, tmp_path: Path) -> None:
    manifest = read_manifest(small_dataset, DATASET_KIND)
    assert manifest["synthetic"] is True
    assert "SYNTHETIC" in manifest["note"]
    assert manifest["summary"]["inputs"][0]["format"] == "synthetic"
    config = SimConfig.from_dict(manifest["config"])
    assert config == small_config()
    simulate(config, tmp_path / "again")
    assert digests(tmp_path / "again") == digests(small_dataset)


def test_output_passes_validation_unchanged(small_dataset: Path) -> None:
    flows = read(small_dataset)
    assert flows.schema == pl.Schema(FLOW_SCHEMA)
    # What a reader would hand to validation: parsed values, numbers as Int64.
    candidates = flows.with_columns(
        pl.col(c).cast(pl.Int64) for c in ("src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes",
                                           "rev_packets", "rev_bytes", "tcp_flags", "source_row")
    ).drop("quality")
    checked = check(candidates, "simulated")
    assert checked.rejects.height == 0
    assert checked.flows.drop("source_file").equals(flows.drop("source_file"))


def test_records_are_consistent(small_dataset: Path) -> None:
    flows = read(small_dataset)
    nodes = pl.read_csv(small_dataset / "nodes.csv")
    local = set(nodes["node"].to_list())
    assert len(local) == 60
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.0.0/8") for ip in local)
    # Every flow has exactly one local endpoint; the other side is a public unicast address.
    src_local, dst_local = flows["src_ip"].is_in(list(local)), flows["dst_ip"].is_in(list(local))
    assert (src_local ^ dst_local).all()
    external = set(flows.filter(~src_local)["src_ip"].unique().to_list()) | set(flows.filter(~dst_local)["dst_ip"].unique().to_list())
    assert len(external) > 1000
    assert all(ipaddress.ip_address(ip).is_global for ip in external)

    ports = pl.col("proto").is_in([6, 17])
    assert flows.filter(ports != pl.col("dst_port").is_not_null()).height == 0
    assert flows.filter(ports != pl.col("src_port").is_not_null()).height == 0
    # Our nodes open connections from the Linux ephemeral range; services never listen on port 0.
    outbound = flows.filter(ports & src_local & (pl.col("label") == "benign"))
    assert outbound["src_port"].min() >= 32768 and outbound["src_port"].max() <= 60999
    assert flows.filter(ports)["dst_port"].min() >= 1
    assert flows.filter((pl.col("proto") == 6) != pl.col("tcp_flags").is_not_null()).height == 0
    assert set(flows["proto"].unique().to_list()) == {1, 6, 17}
    for pk, by in (("fwd_packets", "fwd_bytes"), ("rev_packets", "rev_bytes")):
        sent = flows.filter(pl.col(pk) > 0)
        per_packet = sent[by] / sent[pk]
        assert 40 <= per_packet.min() and per_packet.max() <= 1500
        assert flows.filter((pl.col(pk) == 0) & (pl.col(by) > 0)).height == 0
    assert (flows["fwd_packets"] > 0).all()
    duration = (flows["ts_end"] - flows["ts_start"]).dt.total_microseconds()
    assert duration.min() >= 0 and duration.max() <= 1800 * 10**6
    assert (flows["quality"] == 0).all()
    # ts_start within the simulated span, partitioned by its UTC day.
    assert flows["ts_start"].min() >= small_config().start and flows["ts_start"].max() < small_config().end
    # TCP flags: handshakes complete where both sides sent, SYN alone where nobody answered.
    tcp = flows.filter((pl.col("proto") == 6) & (pl.col("label") == "benign"))
    unanswered = tcp.filter(pl.col("rev_packets") == 0)
    assert set(unanswered["tcp_flags"].unique().to_list()) == {2}
    established = tcp.filter(pl.col("rev_packets") >= 2)
    assert ((established["tcp_flags"] & 18) == 18).all()


def test_sizes_are_heavy_tailed(small_dataset: Path) -> None:
    import math

    benign = read(small_dataset).filter(pl.col("label") == "benign")
    size = (benign["fwd_bytes"] + benign["rev_bytes"]).sort(descending=True)
    top = size.len() // 100
    share = size[:top].sum() / size.sum()
    # Under an exponential (light-tailed) size distribution the largest 1% of flows carry
    # p(1 - ln p) = 5.6% of the bytes; heavy tails (lognormal, Pareto) put far more there.
    light = 0.01 * (1 - math.log(0.01))
    assert share > 2 * light


def test_arrow_schema_and_row_groups(small_dataset: Path) -> None:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(small_dataset / "date=2026-01-05" / "part-00000.parquet")
    assert meta.schema_arrow.equals(arrow_schema())
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"


def test_summary_counts_match_the_files(small_dataset: Path) -> None:
    flows = read(small_dataset)
    summary = json.loads((small_dataset / "netflowgen.json").read_text())["summary"]
    assert summary["rows_written"] == flows.height
    assert summary["label_counts"] == dict(flows.group_by("label").len().sort("len", descending=True).iter_rows())
    assert summary["packets"] == int(flows["fwd_packets"].sum() + flows["rev_packets"].sum())
    assert summary["nodes_by_role"] == {"client": 42, "server": 6, "iot": 12}


def test_config_errors_are_clear() -> None:
    from netflowgen.simulate import RoleConfig, Shape

    with pytest.raises(ValueError, match="whole hour"):
        SimConfig(start="2026-01-05T10:30")
    with pytest.raises(ValueError, match="24 daily and 7 weekly"):
        Shape(daily=(1.0,) * 23)
    with pytest.raises(ValueError, match="unknown services"):
        RoleConfig("x", 1.0, 1.0, Shape(), (("gopher", 1.0),))
    with pytest.raises(ValueError, match="need 2 /24 groups"):
        SimConfig(nodes=300, local_network="10.1.2.0/24", roles=SimConfig().roles[:1])
    with pytest.raises(ValueError, match="unknown DDoS scenarios"):
        small_config(attacks=small_config().attacks.__class__(scenarios=("port-scan",)))


def test_refuses_to_overwrite_unless_told(small_dataset: Path) -> None:
    with pytest.raises(FileExistsError):
        simulate(small_config(), small_dataset)


def test_an_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "flows"
    calls = []

    def stop(done: int, expected: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(small_config(), out, progress=stop)
    assert len(calls) == 3 and calls[0] < calls[2]
    assert list(tmp_path.iterdir()) == []
