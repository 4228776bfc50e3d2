"""Parquet reader: the canonical flow table passed through the rules again, and known layouts
(NF-v3 as distributed, CICFlowMeter columns) mapped by their CSV readers' functions."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netflowgen.read import FormatError, ReadOptions, detect_format, iter_checked, parquet, read_flows
from netflowgen.read.source import DamagedInput, open_sources
from netflowgen.schema import FLOW_SCHEMA, Quality, arrow_schema

UTC = timezone.utc


def read(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Flows, rejects and the number of batches read."""
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(**options)):  # type: ignore[arg-type]
        assert fmt.name == "parquet"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects), len(flows)


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_ingested_table_reads_back_unchanged(fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = read_flows(fixtures / "cicflowmeter" / "cicids2017_trafficlabelling.csv")
    assert set(original["quality"]) == {0, Quality.END_BEFORE_START, Quality.MISSING_COUNTERS}
    path = tmp_path / "part-00000.parquet"
    pq.write_table(original.to_arrow().cast(arrow_schema()), path, row_group_size=4)
    monkeypatch.setattr(parquet, "_BATCH_ROWS", 3)
    flows, rejects, batches = read(path)
    assert batches == 4  # 11 rows, 3 at a time
    assert rejects.height == 0
    # quality and the raw input's source_file/source_row survive the second check
    assert flows.equals(original)


def canonical(**columns: list[object]) -> pl.DataFrame:
    """A canonical table of three rows: valid values unless overridden."""
    base: dict[str, list[object]] = {
        "ts_start": [t(2024, 5, 1, 12, 0)] * 3,
        "ts_end": [t(2024, 5, 1, 12, 0, 5)] * 3,
        "src_ip": ["10.0.0.1"] * 3,
        "dst_ip": ["10.0.0.2"] * 3,
        "src_port": [40000, 40001, 40002],
        "dst_port": [443] * 3,
        "proto": [6] * 3,
        "fwd_packets": [10] * 3,
        "fwd_bytes": [1000] * 3,
        "rev_packets": [8] * 3,
        "rev_bytes": [6000] * 3,
        "tcp_flags": [27] * 3,
        "label": ["benign"] * 3,
        "label_detail": [None] * 3,
        "quality": [0] * 3,
        "source_file": ["capture.log"] * 3,
        "source_row": [7, 8, 9],
    }
    base.update(columns)
    return pl.DataFrame(base, schema={c: FLOW_SCHEMA[c] for c in base})


def test_canonical_rows_are_checked_again(tmp_path: Path) -> None:
    table = canonical(
        ts_end=[t(2024, 5, 1, 12, 0, 5), t(2024, 5, 1, 11, 0), t(2024, 5, 1, 12, 0, 5)],
        src_ip=["10.0.0.1", "10.0.0.1", "not-an-ip"],
        quality=[Quality.NO_END, 0, 0],
    )
    path = tmp_path / "flows.parquet"
    table.write_parquet(path)
    flows, rejects, _ = read(path)
    assert flows.select("ts_end", "quality", "source_file", "source_row").rows() == [
        (t(2024, 5, 1, 12, 0, 5), Quality.NO_END, "capture.log", 7),  # quality already set is kept
        (t(2024, 5, 1, 12, 0), Quality.END_BEFORE_START, "capture.log", 8),  # repaired by the second check
    ]
    assert rejects.rows() == [
        (str(path), 3, "src_ip is not an IP address: not-an-ip",
         "2024-05-01 12:00:00,2024-05-01 12:00:05,not-an-ip,10.0.0.2,40002,443,6,10,1000,8,6000,27,"
         "benign,,0,capture.log,9"),
    ]


def test_canonical_without_provenance_points_at_the_parquet_file(tmp_path: Path) -> None:
    table = canonical(fwd_bytes=[1000, 10 * 65_536, 1000]).drop("quality", "source_file", "source_row")
    # naive nanosecond timestamps, as other tools write them: taken as UTC
    table = table.with_columns(pl.col("ts_start", "ts_end").dt.replace_time_zone(None).dt.cast_time_unit("ns"))
    path = tmp_path / "flows.parquet"
    table.write_parquet(path)
    flows, rejects, _ = read(path)
    assert flows.select("ts_start", "quality", "source_file", "source_row").rows() == [
        (t(2024, 5, 1, 12, 0), 0, str(path), 1),
        (t(2024, 5, 1, 12, 0), 0, str(path), 3),
    ]
    assert rejects.select("source_row", "reason").rows() == [
        (2, "absurd counters: fwd_bytes=655360 with fwd_packets=10"),
    ]


NF_V3 = {
    "FLOW_START_MILLISECONDS": pa.array([1424242193040, 1424242195000, 1424242210500], pa.int64()),
    "FLOW_END_MILLISECONDS": pa.array([1424242193043, 1424242196250, 1424242210000], pa.int64()),
    "IPV4_SRC_ADDR": ["59.166.0.2", "175.45.176.1", "59.166.0.5"],
    "L4_SRC_PORT": pa.array([4894, 13284, 1043], pa.int32()),
    "IPV4_DST_ADDR": ["149.171.126.3", "149.171.126.16", "149.171.126.9"],
    "L4_DST_PORT": pa.array([53, 80, 22], pa.int32()),
    "PROTOCOL": pa.array([17, 6, 6], pa.int8()),
    "L7_PROTO": pa.array([5.126, 7.0, 92.0]),
    "IN_BYTES": pa.array([146, 1920, -5], pa.int64()),
    "IN_PKTS": pa.array([2, 10, 2], pa.int64()),
    "OUT_BYTES": pa.array([178, 354, 0], pa.int64()),
    "OUT_PKTS": pa.array([2, 8, 0], pa.int64()),
    "TCP_FLAGS": pa.array([0, 27, 2], pa.int16()),
    "FLOW_DURATION_MILLISECONDS": pa.array([3, 1250, 0], pa.int64()),
    "Label": pa.array([0, 1, 1], pa.int8()),
    "Attack": ["Benign", "Exploits", "Reconnaissance"],
}


def test_nf_v3_as_distributed_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "NF-UNSW-NB15-v3.parquet"
    pq.write_table(pa.table(NF_V3), path)
    flows, rejects, _ = read(path)
    assert flows.drop("source_file").rows(named=True) == [
        {"ts_start": datetime(2015, 2, 18, 6, 49, 53, 40000, tzinfo=UTC),
         "ts_end": datetime(2015, 2, 18, 6, 49, 53, 43000, tzinfo=UTC),
         "src_ip": "59.166.0.2", "dst_ip": "149.171.126.3", "src_port": 4894, "dst_port": 53, "proto": 17,
         "fwd_packets": 2, "fwd_bytes": 146, "rev_packets": 2, "rev_bytes": 178, "tcp_flags": None,
         "label": "Benign", "label_detail": "0", "quality": 0, "source_row": 1},
        {"ts_start": datetime(2015, 2, 18, 6, 49, 55, tzinfo=UTC),
         "ts_end": datetime(2015, 2, 18, 6, 49, 56, 250000, tzinfo=UTC),
         "src_ip": "175.45.176.1", "dst_ip": "149.171.126.16", "src_port": 13284, "dst_port": 80, "proto": 6,
         "fwd_packets": 10, "fwd_bytes": 1920, "rev_packets": 8, "rev_bytes": 354, "tcp_flags": 27,
         "label": "Exploits", "label_detail": "1", "quality": 0, "source_row": 2},
    ]
    assert rejects.select("source_file", "source_row", "reason").rows() == [
        (str(path), 3, "IN_BYTES is negative: -5"),
    ]
    # the raw text: the fields read, in the file's order
    assert rejects["raw"][0] == "1424242210500,1424242210000,59.166.0.5,1043,149.171.126.9,22,6,-5,2,0,0,2,0,1,Reconnaissance"


def test_nf_v2_in_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "NF-UQ-NIDS-v2.parquet"
    pq.write_table(pa.table({k: v for k, v in NF_V3.items() if "MILLISECONDS" not in k or "DURATION" in k}), path)
    with pytest.raises(FormatError, match="NF-UQ-NIDS-v2.parquet: NetFlow feature set without flow start times"):
        read(path)


def test_cicflowmeter_columns_with_zoned_timestamps(tmp_path: Path) -> None:
    header = ["Flow ID", " Source IP", " Source Port", " Destination IP", " Destination Port", " Protocol",
              " Timestamp", " Flow Duration", " Total Fwd Packets", " Total Backward Packets",
              "Total Length of Fwd Packets", " Total Length of Bwd Packets", " Fwd Header Length",
              " Bwd Header Length", " SYN Flag Count", " ACK Flag Count", " Label"]
    values = [["a", "b"], ["172.16.0.5", "172.16.0.5"], [932, 60000], ["192.168.50.4", "192.168.50.1"], [44723, 80],
              [17, 6], [t(2018, 12, 1, 13, 51, 39), t(2018, 12, 1, 14, 0)], [1, 250000], [2, 2], [0, 1],
              [458.0, 0.0], [0.0, 0.0], [40, 40], [0, 20], [0, 1], [0, 1], ["Portmap", "Syn"]]
    path = tmp_path / "cicddos2019.parquet"
    pq.write_table(pa.table(dict(zip(header, values))), path)
    flows, rejects, _ = read(path, timezone="America/Halifax")
    assert rejects.height == 0
    # the instants survive: put in the capture zone, written as text, read back in that zone
    assert flows.select("ts_start", "ts_end", "fwd_bytes", "rev_bytes", "tcp_flags", "label", "source_row").rows() == [
        (t(2018, 12, 1, 13, 51, 39), t(2018, 12, 1, 13, 51, 39, 1), 498, 0, None, "Portmap", 1),
        (t(2018, 12, 1, 14, 0), t(2018, 12, 1, 14, 0, 0, 250000), 40, 20, 18, "Syn", 2),
    ]


def test_unknown_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"time": [1], "host": ["a"]}), path)
    with pytest.raises(FormatError, match=r"other.parquet: Parquet columns are not a known flow layout\. "
                                          r"Found: time, host\. Needed: the canonical flow table \(ts_start, "):
        read(path)


def test_canonical_columns_with_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "wrong.parquet"
    canonical().with_columns(pl.col("ts_start").cast(pl.String), pl.col("fwd_bytes").cast(pl.Float64)).write_parquet(path)
    with pytest.raises(FormatError, match="ts_start is large_string, not a timestamp; fwd_bytes is double, not an integer"):
        read(path)


def test_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    with pytest.raises(FormatError, match="broken.parquet: not a readable Parquet file"):
        read(path)


def test_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(arrow_schema().empty_table(), path)
    # One empty batch: a file with no rows is still accounted for (listed in a manifest).
    (batch,) = list(iter_checked(path))
    assert (batch[2].flows.height, batch[2].rejects.height) == (0, 0)
    assert read_flows(path).height == 0


def test_detected_by_magic(tmp_path: Path) -> None:
    path = tmp_path / "flows.bin"
    canonical().write_parquet(path)
    (source,) = open_sources(path)
    assert detect_format(source).name == "parquet"


# --- damaged files (the crashes benchmarks/fuzz.py found: each an error naming the file now) -----


def test_a_column_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "names.parquet"
    canonical().write_parquet(path)
    data = path.read_bytes()
    assert data.count(b"label_detail") == 3  # the footer's schema and column metadata
    path.write_bytes(data.replace(b"label_detail", b"\xdfabel_detail"))
    with pytest.raises(FormatError, match=r"names.parquet: not a readable Parquet file: 'utf-8' codec can't decode"):
        read(path)


def test_a_string_that_is_not_utf8_is_damage_not_a_panic(tmp_path: Path) -> None:
    # Parquet stores strings as bytes and checks nothing; Polars panics (a BaseException) on
    # one that is not UTF-8. Written here through Arrow buffers, as a damaged file holds it.
    table = canonical().to_arrow().cast(arrow_schema())
    offsets = pa.array([0, 6, 12, 18], pa.int32()).buffers()[1]
    bad = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"benignbenign\xff\xfenign")])
    with pytest.raises(pa.ArrowInvalid, match="Invalid UTF8"):
        bad.validate(full=True)
    path = tmp_path / "strings.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", bad), path)
    with pytest.raises(DamagedInput, match=r"strings.parquet: damaged Parquet data after row 0 \(.*Invalid UTF8"):
        read(path)


@pytest.mark.parametrize(("zone", "message"), [
    (b"]TC", r"zones.parquet: column 'ts_start' has an unknown time zone '\]TC'"),
    (b"\xabTC", r"zones.parquet: column 'ts_start' has a time zone that is not UTF-8 text"),
])
def test_a_damaged_time_zone_is_refused_naming_the_column(tmp_path: Path, zone: bytes, message: str) -> None:
    # Found by benchmarks/fuzz.py (10^5 inputs): one byte of the Arrow schema that Parquet
    # carries in its footer made Polars raise a bare ComputeError, or panic on non-UTF-8 text.
    path = tmp_path / "zones.parquet"
    canonical().write_parquet(path)
    data = path.read_bytes()
    stored = pq.read_metadata(path).metadata[b"ARROW:schema"]
    schema = base64.b64decode(stored)
    assert schema.count(b"UTC") == 1  # one string, shared by ts_start and ts_end
    damaged = base64.b64encode(schema.replace(b"UTC", zone))
    assert len(damaged) == len(stored) and data.count(stored) == 1
    path.write_bytes(data.replace(stored, damaged))
    with pytest.raises(FormatError, match=message):
        read(path)


def test_damage_anywhere_in_a_file_is_an_error_naming_it_or_rows_that_add_up(tmp_path: Path) -> None:
    """Every 7th byte of a two-row-group file overwritten in turn: each read ends in an error
    that names the file, or in rows where every row is a flow or a reject (never a raw pyarrow
    error, a panic or a lost row)."""
    path = tmp_path / "part.parquet"
    pq.write_table(canonical().to_arrow().cast(arrow_schema()), path, row_group_size=2)
    data = path.read_bytes()
    outcomes = {"error": 0, "read": 0}
    for at in range(4, len(data) - 8, 7):
        damaged = tmp_path / "damaged.parquet"
        damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xA5]) + data[at + 1:])
        try:
            flows, rejects, _ = read(damaged)
        except (FormatError, DamagedInput) as e:
            assert "damaged.parquet" in str(e)
            outcomes["error"] += 1
        else:
            assert flows.height + rejects.height == 3
            outcomes["read"] += 1
    assert outcomes["error"] > 10 and outcomes["read"] > 10, outcomes  # both outcomes were exercised


def test_a_column_of_a_type_no_field_has_is_refused(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.py: a damaged logical type made TCP_FLAGS a duration, which the
    # text parsers cannot take.
    path = tmp_path / "nf.parquet"
    pq.write_table(pa.table({**NF_V3, "TCP_FLAGS": pa.array([1, 2, 3], pa.duration("ms"))}), path)
    with pytest.raises(FormatError, match=r"nf.parquet: Parquet column 'TCP_FLAGS' holds Duration\(time_unit='ms'\), "
                                          "not a number, text or time"):
        read(path)


def test_rows_the_metadata_states_but_no_batch_holds_are_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by benchmarks/fuzz.py: a flipped bit in row-group metadata made pyarrow read 0 of a
    # file's 5 rows without an error. Stood in for here by a reader that yields one batch less.
    path = tmp_path / "part.parquet"
    pq.write_table(canonical().to_arrow().cast(arrow_schema()), path, row_group_size=2)
    real = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda self, **kw: iter(list(real(self, **kw))[:-1]))
    monkeypatch.setattr(parquet, "_BATCH_ROWS", 2)
    with pytest.raises(DamagedInput, match="part.parquet: the file states 3 rows but 2 could be read: its metadata is damaged"):
        read(path)


def test_a_time_polars_cannot_write_is_a_reject_not_a_panic(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.py: a canonical row with ts_end in the year 300,000 was rejected,
    # and writing its raw text made Polars panic. The raw text now says what the value is.
    far = pl.Series([9 * 10**18, None, 9 * 10**18], dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    path = tmp_path / "far.parquet"
    canonical(ts_end=[t(2024, 5, 1, 12, 0, 5), t(2024, 5, 1, 12, 0, 6), t(2024, 5, 1, 12, 0, 7)]).with_columns(
        pl.when(pl.col("src_port") == 40001).then(pl.col("ts_end")).otherwise(far).alias("ts_end")).write_parquet(path)
    flows, rejects, _ = read(path)
    assert flows.height == 1 and rejects.height == 2
    assert set(rejects["reason"]) == {"ts_end after 2100 (absurd clock or duration)"}
    assert all("9000000000000000000 us since 1970 (out of range)" in raw for raw in rejects["raw"])
