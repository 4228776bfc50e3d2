"""Inject: attack flows placed onto background flows at chosen victims, times and intensities."""

from __future__ import annotations

import filecmp
import ipaddress
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.dataset.ingest import IngestConfig, ingest
from netflowgen.dataset.manifest import scan_flows
from netflowgen.simulate.inject import (
    INJECTIONS_NAME,
    InjectConfig,
    Intensity,
    inject,
    parse_time,
)
from netflowgen.schema import FLOW_COLUMNS, FLOW_SCHEMA

T0 = datetime(2024, 3, 1, 23, 45, tzinfo=UTC)  # the background crosses midnight: two day partitions
US = timedelta(microseconds=1)
ATTACK_VICTIM = "10.10.10.10"
SERVER = "10.0.0.1"  # a local node that answers (destination with reverse packets)
CLIENT = "10.0.0.2"  # a local node that sends
BROADCAST = "10.0.0.255"  # local, only ever receives without answering: never drawn as a victim
runner = CliRunner()


def flows(rows: list[dict[str, object]], source: str) -> pl.DataFrame:
    """Canonical flows from short rows (missing columns get plain defaults)."""
    filled = []
    for i, row in enumerate(rows):
        filled.append({
            "ts_end": row["ts_start"], "src_port": 40000 + i % 1000, "dst_port": 80, "proto": 6,
            "fwd_packets": 2, "fwd_bytes": 120, "rev_packets": 0, "rev_bytes": 0, "tcp_flags": 2,
            "label": None, "label_detail": None, "quality": 0, "source_file": source, "source_row": i + 1,
            **row,
        })
    return pl.DataFrame(filled, schema=FLOW_SCHEMA).select(FLOW_COLUMNS)


def background_table() -> pl.DataFrame:
    """30 minutes of the server's traffic, minute by minute: 20 flows in 20 minutes, 5 in 5,
    50 in 5 (median 20 per active minute), plus a client, a broadcast and an outside host."""
    per_minute = [20] * 10 + [5] * 5 + [20] * 10 + [50] * 5
    rows: list[dict[str, object]] = []
    for minute, n in enumerate(per_minute):
        for k in range(n):
            start = T0 + timedelta(minutes=minute, microseconds=k * 997_003)
            rows.append({"ts_start": start, "ts_end": start + timedelta(milliseconds=350), "src_ip": "203.0.113.7",
                         "dst_ip": SERVER, "rev_packets": 2, "rev_bytes": 900, "label": "Benign"})
    for minute in range(0, 30, 3):
        start = T0 + timedelta(minutes=minute, seconds=7)
        rows.append({"ts_start": start, "src_ip": CLIENT, "dst_ip": "8.8.8.8", "proto": 17, "dst_port": 53, "label": "Benign"})
        rows.append({"ts_start": start, "src_ip": "8.8.4.4", "dst_ip": BROADCAST, "proto": 17, "dst_port": 137, "fwd_packets": 1,
                     "fwd_bytes": 78, "label": "Benign", "label_detail": "noise"})
    return flows(rows, "background.log").sort("ts_start")


def attack_table(minutes: int = 5, per_minute: int = 1000, start: datetime = datetime(2021, 6, 20, 19, 42, tzinfo=UTC)) -> pl.DataFrame:
    """A SYN flood at 10.10.10.10 with irregular microsecond gaps, a few RSTs leaving the victim
    and two stray flows between other hosts (left out)."""
    rng = np.random.default_rng(7)
    rows: list[dict[str, object]] = []
    for minute in range(minutes):
        offsets = np.sort(rng.integers(0, 60_000_000, per_minute))
        for off in offsets:
            t = start + timedelta(minutes=minute, microseconds=int(off))
            rows.append({"ts_start": t, "ts_end": t + timedelta(microseconds=int(off) % 5000),
                         "src_ip": f"198.51.{int(off) % 200}.{int(off) % 250 + 1}", "dst_ip": ATTACK_VICTIM,
                         "dst_port": 443, "fwd_packets": 1 + int(off) % 3, "fwd_bytes": 60 * (1 + int(off) % 3)})
    for k in range(3):
        t = start + timedelta(seconds=10 + k, microseconds=123_457)
        rows.append({"ts_start": t, "src_ip": ATTACK_VICTIM, "dst_ip": "198.51.0.1", "src_port": 443, "dst_port": 50000 + k,
                     "fwd_packets": 1, "fwd_bytes": 40, "tcp_flags": 4})
    for k in range(2):
        t = start + timedelta(seconds=20 + k)
        rows.append({"ts_start": t, "src_ip": "2001:db8::1", "dst_ip": "2001:db8::2", "proto": 17, "dst_port": 53})
    return flows(rows, "synflood.pcap").sort("ts_start")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inject")
    paths = {"background": root / "background.parquet", "attack": root / "synflood.parquet",
             "small": root / "amp.UDP.snmp.src161.parquet", "empty": root / "empty.parquet"}
    background_table().write_parquet(paths["background"])
    attack_table().write_parquet(paths["attack"])
    attack_table(minutes=1, per_minute=40).write_parquet(paths["small"])
    attack_table().head(0).write_parquet(paths["empty"])
    paths["dataset"] = root / "background-ds"
    ingest(IngestConfig((paths["background"],), paths["dataset"]))
    return paths


def read_out(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(out.glob("date=*/*.parquet")))


def read_truth(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / INJECTIONS_NAME, schema_overrides={"intensity": pl.String})


def sort_all(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(list(FLOW_COLUMNS), nulls_last=True)


def test_injected_flows_keep_timing_land_on_the_victim_and_carry_labels(files: dict[str, Path], tmp_path: Path) -> None:
    at = T0 + timedelta(minutes=12, seconds=30, microseconds=250_001)
    config = InjectConfig(files["background"], (files["attack"],), victims=(CLIENT,), times=(at,))
    summary = inject(config, tmp_path / "out")
    out = read_out(tmp_path / "out")
    injected = out.filter(pl.col("source_file") == "synflood.pcap").sort("source_row")
    capture = attack_table().filter((pl.col("src_ip") == ATTACK_VICTIM) | (pl.col("dst_ip") == ATTACK_VICTIM)).sort("source_row")
    assert injected.height == capture.height == 5003  # the two stray flows are left out
    offset = at - capture["ts_start"].min()
    assert (injected["ts_start"] - capture["ts_start"]).unique().to_list() == [offset]  # one shift, to the microsecond
    assert (injected["ts_end"] - injected["ts_start"]).equals(capture["ts_end"] - capture["ts_start"])
    assert injected["ts_start"].min() == at
    inbound = capture["dst_ip"] == ATTACK_VICTIM
    assert injected.filter(inbound)["dst_ip"].unique().to_list() == [CLIENT]
    assert injected.filter(inbound)["src_ip"].equals(capture.filter(inbound)["src_ip"])  # attackers kept
    assert injected.filter(~inbound)["src_ip"].unique().to_list() == [CLIENT]
    assert injected.filter(~inbound)["dst_ip"].to_list() == ["198.51.0.1"] * 3
    same = ["src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags", "quality"]
    assert injected.select(same).equals(capture.select(same))
    assert injected["label"].unique().to_list() == ["DDoS"]
    assert injected["label_detail"].unique().to_list() == ["synflood"]

    truth = read_truth(tmp_path / "out").row(0, named=True)
    assert truth["id"] == 0 and truth["victim"] == CLIENT and truth["original_victim"] == ATTACK_VICTIM
    assert (truth["attack_file"], truth["attack_type"], truth["intensity"]) == (str(files["attack"]), "synflood", "1")
    assert (truth["fraction"], truth["flows"], truth["capture_flows"]) == (1.0, 5003, 5003)
    assert truth["packets"] == int(capture["fwd_packets"].sum()) and truth["bytes"] == int(capture["fwd_bytes"].sum())
    assert truth["at"] == truth["start"] == at.isoformat()
    assert truth["end"] == (capture["ts_end"].max() + offset).isoformat()
    assert summary.attacks[0].flows_left_out == 2
    assert summary.label_counts == {"Benign": background_table().height, "DDoS": 5003}
    manifest = json.loads((tmp_path / "out" / "netflowgen.json").read_text())
    assert manifest["kind"] == "netflowgen.flows"
    assert manifest["injection"]["seed"] == 0 and manifest["injection"]["victims"] == [CLIENT]
    assert manifest["injection"]["times"] == [at.isoformat()]


@pytest.mark.parametrize("kind", ["background", "dataset"])
def test_background_rows_are_all_there_unchanged(files: dict[str, Path], tmp_path: Path, kind: str) -> None:
    config = InjectConfig(files[kind], (files["attack"],), n_victims=2, n_times=2, intensities=(Intensity(0.1),), seed=3)
    summary = inject(config, tmp_path / "out")
    out = read_out(tmp_path / "out")
    background = scan_flows(files[kind]).collect()
    kept = out.filter(pl.col("source_file") != "synflood.pcap")
    assert sort_all(kept).equals(sort_all(background))  # every row, every value
    assert out.height == background.height + 4 * 500
    assert (summary.background_rows, summary.injected_rows) == (background.height, 2000)
    assert summary.partitions == ["date=2024-03-01", "date=2024-03-02"]
    if kind == "dataset":  # the dataset's part files are copied byte for byte
        for part in files["dataset"].glob("date=*/*.parquet"):
            assert filecmp.cmp(part, tmp_path / "out" / part.relative_to(files["dataset"]), shallow=False)


def test_fraction_keeps_an_exact_count_reproducibly(files: dict[str, Path], tmp_path: Path) -> None:
    def run(seed: int, name: str) -> pl.DataFrame:
        config = InjectConfig(files["background"], (files["attack"],), victims=(SERVER,), times=(T0 + timedelta(minutes=2),),
                              intensities=(Intensity.parse("0.25"),), seed=seed)
        inject(config, tmp_path / name)
        return read_out(tmp_path / name).filter(pl.col("label") == "DDoS").sort("source_row")

    first, again, other = run(1, "a"), run(1, "b"), run(2, "c")
    assert first.height == again.height == other.height == math.floor(0.25 * 5003 + 0.5) == 1251
    assert first.equals(again)
    assert (tmp_path / "a" / INJECTIONS_NAME).read_bytes() == (tmp_path / "b" / INJECTIONS_NAME).read_bytes()
    assert not first["source_row"].equals(other["source_row"])
    assert first["source_row"].is_unique().all() and first["source_row"].max() <= 5005
    truth = read_truth(tmp_path / "a").row(0, named=True)
    assert (truth["flows"], truth["fraction"]) == (1251, 1251 / 5003)


def test_times_victim_rate_reaches_about_n_times_the_victims_median(files: dict[str, Path], tmp_path: Path) -> None:
    at = T0 + timedelta(minutes=5)  # on a minute boundary: the capture's 5 minutes are 5 steps
    config = InjectConfig(files["background"], (files["attack"],), victims=(SERVER,), times=(at,),
                          intensities=(Intensity.parse("2x"),), seed=11)
    inject(config, tmp_path / "out")
    truth = read_truth(tmp_path / "out").row(0, named=True)
    assert truth["victim_median_per_step"] == 20.0  # 20 in 20 of the server's 30 active minutes
    assert truth["capture_median_per_step"] == 1000.0
    assert truth["fraction"] == round(0.04 * 5003) / 5003  # 2 x 20 / 1000 of the flows
    out = read_out(tmp_path / "out").filter(pl.col("label") == "DDoS")
    per_minute = out.group_by(pl.col("ts_start").dt.truncate("1m")).len()["len"]
    assert per_minute.len() == 5
    assert per_minute.median() == truth["injected_median_per_step"]
    # Each minute's count is hypergeometric with mean ~40 (sd ~6.2): the median of 5 lies within 4 sd.
    assert 40 - 25 <= per_minute.median() <= 40 + 25


def test_a_capped_multiple_injects_the_whole_capture(files: dict[str, Path], tmp_path: Path) -> None:
    config = InjectConfig(files["background"], (files["small"],), victims=(SERVER,), times=(T0,),
                          intensities=(Intensity.parse("100x"),))
    summary = inject(config, tmp_path / "out")
    assert (summary.injections[0].fraction, summary.injections[0].flows) == (1.0, 43)
    assert summary.injections[0].attack_type == "amp.UDP.snmp.src161"


def test_many_injections_combine_victim_major_with_cycled_intensities(files: dict[str, Path], tmp_path: Path) -> None:
    config = InjectConfig(files["dataset"], (files["attack"], files["small"]), n_victims=2, n_times=3,
                          intensities=(Intensity(0.5), Intensity(1.0)), seed=5)
    inject(config, tmp_path / "a")
    truth = read_truth(tmp_path / "a")
    assert truth["id"].to_list() == list(range(6))
    assert truth["intensity"].to_list() == ["0.5", "1", "0.5", "1", "0.5", "1"]
    victims = truth["victim"].to_list()
    assert victims[0:3] == [victims[0]] * 3 and victims[3:6] == [victims[3]] * 3
    assert sorted({victims[0], victims[3]}) == [SERVER, CLIENT]  # never the broadcast or outside hosts
    lo, hi = background_table()["ts_start"].min(), background_table()["ts_end"].max()
    for row in truth.iter_rows(named=True):
        at, end = datetime.fromisoformat(row["at"]), datetime.fromisoformat(row["end"])
        assert lo <= at and end <= hi  # the whole attack fits inside the background
        assert row["flows"] == math.floor(float(row["intensity"]) * row["capture_flows"] + 0.5)
    assert set(truth["attack_type"]) <= {"synflood", "amp.UDP.snmp.src161"}
    inject(config, tmp_path / "b")  # the same seed gives the same dataset, byte for byte
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    for name in files_a:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        if name.name == "netflowgen.json":  # it names its own folder, and nothing else differs
            ja, jb = json.loads(a), json.loads(b)
            assert (ja["summary"].pop("out"), jb["summary"].pop("out")) == (str(tmp_path / "a"), str(tmp_path / "b"))
            assert ja == jb
        else:
            assert a == b, name
    inject(InjectConfig(files["dataset"], config.attacks, n_victims=2, n_times=3, intensities=config.intensities, seed=6), tmp_path / "c")
    assert read_truth(tmp_path / "c")["at"].to_list() != truth["at"].to_list()


def test_drawn_times_leave_out_1970_clocks(files: dict[str, Path], tmp_path: Path) -> None:
    stray = flows([{"ts_start": datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC), "src_ip": CLIENT, "dst_ip": "8.8.8.8"}], "odd.log")
    path = tmp_path / "with-1970.parquet"
    pl.concat([stray, background_table()]).write_parquet(path)
    summary = inject(InjectConfig(path, (files["small"],), victims=(CLIENT,), n_times=20, seed=1), tmp_path / "out")
    starts = [datetime.fromisoformat(j.at) for j in summary.injections]
    assert len(starts) == 20 and min(starts) >= T0 and summary.first_start == "1970-01-01T00:00:05+00:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"victims": ("10.9.9.9",)}, "victim 10.9.9.9 never occurs in the background"),
        ({"victims": ("fd00::1",)}, "victim fd00::1 is IPv6, but no attack has an IPv6 victim"),
        ({"times": (T0 - timedelta(hours=1),)}, "lies outside the background's span"),
        ({"times": (T0 + timedelta(minutes=29),)}, "would end after the background (ends 2024-03-02T00:14:49.203147+00:00)"),
        ({"n_victims": 3, "victims": ()}, "cannot draw 3 victims: the background has 2 local nodes that send traffic"),
        ({"attacks": ("empty",)}, "no flows"),
        ({"attack_victim": "192.0.2.1"}, "no flow comes from or goes to the attack victim 192.0.2.1"),
    ],
)
def test_errors_name_what_is_wrong_and_leave_nothing(files: dict[str, Path], tmp_path: Path, change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"victims": (SERVER,), "times": (T0 + timedelta(minutes=1),)}
    base.update(change)
    if base.get("attacks") == ("empty",):
        base["attacks"] = (files["empty"],)
    base.setdefault("attacks", (files["attack"],))
    config = InjectConfig(files["background"], **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(message)):
        inject(config, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder


def test_config_errors() -> None:
    bg, attack = Path("bg"), (Path("a.pcap"),)
    with pytest.raises(ValueError, match="either victims"):
        InjectConfig(bg, attack, victims=("10.0.0.1",), n_victims=1, n_times=1)
    with pytest.raises(ValueError, match="either start times"):
        InjectConfig(bg, attack, n_victims=1)
    with pytest.raises(ValueError, match="not an IP address: 'server'"):
        InjectConfig(bg, attack, victims=("server",), n_times=1)
    with pytest.raises(ValueError, match="write 1.5x"):
        Intensity.parse("1.5")
    with pytest.raises(ValueError, match="not an intensity"):
        Intensity.parse("lots")
    with pytest.raises(ValueError, match="2 attack types for 1 attacks"):
        InjectConfig(bg, attack, n_victims=1, n_times=1, attack_types=("a", "b"))
    assert InjectConfig(bg, (Path("x/dns.amp.pcap.gz"),), n_victims=1, n_times=1).attack_type(0) == "dns.amp"
    assert InjectConfig(bg, attack, victims=("fd00:0::0001",), n_times=1).victims == ("fd00::1",)
    assert parse_time("2024-03-01T23:00:00+01:00") == datetime(2024, 3, 1, 22, 0, tzinfo=UTC)


def test_output_exists_needs_overwrite(files: dict[str, Path], tmp_path: Path) -> None:
    config = InjectConfig(files["background"], (files["small"],), victims=(SERVER,), times=(T0,))
    inject(config, tmp_path / "out")
    with pytest.raises(FileExistsError, match="--overwrite"):
        inject(config, tmp_path / "out")


def test_cli_json_and_errors(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["inject", "--background", str(files["dataset"]), "--attack", str(files["small"]), "--victims", "1",
            "--times", "2", "--intensity", "0.5", "--intensity", "1x", "--seed", "4", "--attack-type", "snmp",
            "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [j["intensity"] for j in summary["injections"]] == ["0.5", "1x"]
    assert summary["injections"][0]["flows"] == 22  # round(0.5 * 43)
    assert {j["attack_type"] for j in summary["injections"]} == {"snmp"}
    assert summary["seed"] == 4 and summary["injected_rows"] == sum(j["flows"] for j in summary["injections"])
    result = runner.invoke(app, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label_details"]["snmp"] == summary["injected_rows"]

    bad = runner.invoke(app, ["inject", "-b", str(files["dataset"]), "-a", str(files["small"]), "--victim", "10.0.0.1",
                              "--at", "2030-01-01T00:00:00", "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 1
    assert "error: start time 2030-01-01T00:00:00+00:00 lies outside the background's span" in bad.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.shared_data
@pytest.mark.integration
def test_real_attack_captures_onto_real_background(shared_data: Path, tmp_path: Path) -> None:
    background = shared_data / "iot23-34-1" / "conn.log.labeled"
    attacks = (shared_data / "stopddos" / "amp.UDP.snmp.src161.pcapng", shared_data / "stopddos" / "amp.dns.RRSIG.fragmented.pcap")
    at = parse_time("2018-12-21T20:00:00.000001")
    config = InjectConfig(background, attacks, victims=("192.168.1.195",), n_times=None, times=(at,),
                          intensities=(Intensity(1.0),), seed=2)
    summary = inject(config, tmp_path / "out")
    info = {a.attack_type: a for a in summary.attacks}
    assert (info["amp.UDP.snmp.src161"].flows, info["amp.UDP.snmp.src161"].flows_left_out) == (4339, 0)
    assert (info["amp.dns.RRSIG.fragmented"].flows, info["amp.dns.RRSIG.fragmented"].flows_left_out) == (650, 9)
    assert {a.victim for a in summary.attacks} == {"10.10.10.10"}
    [injection] = summary.injections
    capture = scan_flows(injection.attack_file).collect().filter(pl.col("dst_ip") == "10.10.10.10").sort("source_row")
    out = read_out(tmp_path / "out")
    injected = out.filter(pl.col("label") == "DDoS").sort("source_row")
    assert injected.height == capture.height == injection.flows
    assert (injected["ts_start"] - capture["ts_start"]).unique().to_list() == [at - capture["ts_start"].min()]
    assert injected["dst_ip"].unique().to_list() == ["192.168.1.195"]
    assert injected["label_detail"].unique().to_list() == [injection.attack_type]
    original = scan_flows(background).collect()
    assert summary.background_rows == original.height == 23145
    assert sort_all(out.filter(pl.col("label") != "DDoS")).equals(sort_all(original))


def test_a_schedule_places_each_pair_and_coverage_drops_what_the_archive_missed(files: dict[str, Path], tmp_path: Path) -> None:
    from netflowgen.dataset.coverage import dataset_coverage

    # The background's middle ten minutes were never observed: its two halves are separate files.
    table = background_table()
    first = table.filter(pl.col("ts_start") < T0 + timedelta(minutes=10)).with_columns(pl.lit("a.log").alias("source_file"))
    second = table.filter(pl.col("ts_start") >= T0 + timedelta(minutes=20)).with_columns(pl.lit("b.log").alias("source_file"))
    pl.concat([first, second]).write_parquet(tmp_path / "holed.parquet")
    ingest(IngestConfig((tmp_path / "holed.parquet",), tmp_path / "bg"))
    cov = dataset_coverage(tmp_path / "bg")
    assert len(cov.intervals) == 2
    at_server, at_client = T0 + timedelta(minutes=7), T0 + timedelta(minutes=21)
    config = InjectConfig(tmp_path / "bg", (files["attack"],), schedule=((SERVER, at_server), (CLIENT, at_client)),
                          within_coverage=True)
    inject(config, tmp_path / "out")
    truth = read_truth(tmp_path / "out").sort("id")
    assert truth["victim"].to_list() == [SERVER, CLIENT]
    assert [datetime.fromisoformat(a) for a in truth["at"].to_list()] == [at_server, at_client]
    out = read_out(tmp_path / "out").filter(pl.col("label") == "DDoS")
    ends = out["ts_end"].dt.epoch("us").to_numpy()
    assert cov.contains(ends).all(), "no injected flow ends where the background saw nothing"
    # The 5-minute flood at minute 7 runs into the hole from minute 10: most of it is dropped, and counted.
    dropped = truth["flows_outside_coverage"].to_list()
    assert dropped[0] > 2000 and dropped[1] == 0
    assert truth["flows"].sum() == out.height
    with pytest.raises(ValueError, match="replaces victims and times"):
        InjectConfig(tmp_path / "bg", (files["attack"],), schedule=((SERVER, at_server),), victims=(CLIENT,))


def test_ipv4_captures_onto_an_ipv6_victim_through_nat64_addresses(files: dict[str, Path], tmp_path: Path) -> None:
    v6 = "fd00::5"
    bg = background_table().with_columns(pl.lit(v6).alias("dst_ip"))
    bg.write_parquet(tmp_path / "v6.parquet")
    at = T0 + timedelta(minutes=3)
    with pytest.raises(ValueError, match="IPv6"):
        inject(InjectConfig(tmp_path / "v6.parquet", (files["small"],), victims=(v6,), times=(at,)), tmp_path / "no")
    inject(InjectConfig(tmp_path / "v6.parquet", (files["small"],), victims=(v6,), times=(at,), translate_family=True),
           tmp_path / "out")
    out = read_out(tmp_path / "out").filter(pl.col("label") == "DDoS")
    capture = attack_table(minutes=1, per_minute=40).filter(pl.col("dst_ip") == ATTACK_VICTIM)
    inbound = out.filter(pl.col("src_ip") != v6)
    assert inbound["dst_ip"].unique().to_list() == [v6]
    assert out.filter(pl.col("src_ip") == v6)["dst_ip"].unique().to_list() == ["64:ff9b::c633:1"]  # 198.51.0.1
    first = capture.sort("source_row")["src_ip"][0]
    mapped = out.sort("source_row")["src_ip"][0]
    assert ipaddress.IPv6Address(mapped) in ipaddress.IPv6Network("64:ff9b::/96")
    assert ipaddress.IPv4Address(int(ipaddress.IPv6Address(mapped)) & 0xFFFFFFFF) == ipaddress.IPv4Address(first)
