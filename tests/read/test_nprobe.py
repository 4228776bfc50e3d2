"""NetFlow feature sets with nProbe field names (NF-UQ-NIDS family), value by value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, detect_format, iter_checked, nprobe
from netflowgen.read.cicflowmeter import read_header
from netflowgen.read.source import open_sources
from netflowgen.read.text import read_delimited
from netflowgen.schema import FLOW_SCHEMA, Quality

UTC = timezone.utc


@pytest.fixture(scope="module")
def nf(fixtures: Path) -> Path:
    return fixtures / "nprobe"


def read(path: Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(format="nprobe", **options)):  # type: ignore[arg-type]
        assert fmt.name == "nprobe"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects)


def ms(epoch_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)


def flow(row: int, start_ms: int, end_ms: int, src: str, dst: str, sport: int | None, dport: int | None, proto: int,
         fwd: tuple[int, int], rev: tuple[int, int], flags: int | None, label: str | None, detail: str | None,
         quality: int = 0) -> dict[str, object]:
    return {
        "ts_start": ms(start_ms), "ts_end": ms(end_ms), "src_ip": src, "dst_ip": dst, "src_port": sport,
        "dst_port": dport, "proto": proto, "fwd_packets": fwd[0], "fwd_bytes": fwd[1], "rev_packets": rev[0],
        "rev_bytes": rev[1], "tcp_flags": flags, "label": label, "label_detail": detail, "quality": quality,
        "source_row": row,
    }


def rows(flows: pl.DataFrame) -> list[dict[str, object]]:
    return flows.drop("source_file").rows(named=True)


V3_FLOWS = [
    flow(2, 1424242193040, 1424242193043, "59.166.0.2", "149.171.126.3", 4894, 53, 17, (2, 146), (2, 178), None,
         "Benign", "0"),
    flow(3, 1424242195000, 1424242196250, "175.45.176.1", "149.171.126.16", 13284, 80, 6, (10, 1920), (8, 354), 27,
         "Exploits", "1"),
    # an IPv6 address where the IPv4 field is: kept, in compressed form
    flow(4, 1424242200000, 1424242200100, "fe80::250:56ff:fe9c:1", "ff02::fb", 5353, 5353, 17, (3, 300), (0, 0), None,
         "Benign", "0"),
    # end before start: repaired to the start
    flow(5, 1424242210500, 1424242210500, "59.166.0.5", "149.171.126.9", 1043, 22, 6, (2, 120), (0, 0), 2,
         "Reconnaissance", "1", quality=Quality.END_BEFORE_START),
    # ICMP: no ports (nProbe's L4_DST_PORT holds type * 256 + code)
    flow(10, 1424242250000, 1424242250500, "175.45.176.2", "149.171.126.10", None, None, 1, (2, 168), (2, 168), None,
         "DoS", "1"),
]
V3_REJECTS = {
    6: "FLOW_START_MILLISECONDS: cannot parse abc",
    7: "IN_BYTES is negative: -5",
    8: "expected 55 fields, found 20",
    9: "absurd counters: fwd_bytes=40 with fwd_packets=0",
    11: "empty row: every field is blank",
    12: "repeated header line",
}


def test_nf_v3_every_value(nf: Path) -> None:
    path = nf / "nf_unsw_nb15_v3.csv"
    flows, rejects = read(path)
    assert flows.schema == pl.Schema(FLOW_SCHEMA)
    assert rows(flows) == V3_FLOWS
    assert flows["source_file"].unique().to_list() == [str(path)]
    assert dict(zip(rejects["source_row"], rejects["reason"])) == V3_REJECTS
    assert flows.height + rejects.height == len(path.read_text().splitlines()) - 1 == 11


def test_nf_v3_in_small_blocks(nf: Path) -> None:
    flows, rejects = read(nf / "nf_unsw_nb15_v3.csv", block_bytes=400)
    assert rows(flows) == V3_FLOWS
    assert sorted(zip(rejects["source_row"], rejects["reason"])) == sorted(V3_REJECTS.items())


def test_raw_text_of_a_rejected_row(nf: Path) -> None:
    path = nf / "nf_unsw_nb15_v3.csv"
    _, rejects = read(path)
    lines = path.read_text().splitlines()
    raw = dict(zip(rejects["source_row"], rejects["raw"]))
    assert raw[7] == lines[6]
    assert raw[8] == lines[7]


def test_without_attack_column_label_is_the_binary_label(nf: Path, tmp_path: Path) -> None:
    lines = (nf / "nf_unsw_nb15_v3.csv").read_text().splitlines()[:3]
    path = tmp_path / "no_attack.csv"
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    flows, _ = read(path)
    assert flows.select("label", "label_detail").rows() == [("0", None), ("1", None)]


def test_nprobe_dump_with_ipv6_fields_and_duration(nf: Path) -> None:
    flows, rejects = read(nf / "nprobe_dump.flows")
    assert rows(flows) == [
        flow(2, 1660934932096, 1660934932096, "81.89.49.98", "185.191.171.24", 80, 9594, 6, (1, 52), (0, 0), 16,
             None, None),
        # IPV4 fields 0.0.0.0: the IPv6 fields hold the addresses; end = start + FLOW_DURATION_MILLISECONDS
        flow(3, 1660934933000, 1660934934500, "2001:db8::1", "2001:db8::2", 443, 50123, 6, (10, 1200), (8, 800), 26,
             None, None),
    ]
    assert rejects.height == 0


@pytest.mark.parametrize("name", ["nf_uq_nids_v2.csv", "nf_unsw_nb15_v1.csv"])
def test_sets_without_timestamps_are_refused(nf: Path, name: str) -> None:
    with pytest.raises(FormatError, match=f"{name}: NetFlow feature set without flow start times.*use the v3 sets"):
        read(nf / name)


def test_header_only_and_empty_files(nf: Path) -> None:
    # One empty batch: a file with no rows is still accounted for (listed in a manifest).
    (batch,) = list(iter_checked(nf / "header_only.csv", ReadOptions(format="nprobe")))
    assert (batch[2].flows.height, batch[2].rejects.height) == (0, 0)
    with pytest.raises(FormatError, match="empty.csv: file is empty"):
        read(nf / "empty.csv")


@pytest.mark.parametrize("name", [
    "nf_unsw_nb15_v3.csv", "nf_uq_nids_v2.csv", "nf_unsw_nb15_v1.csv", "nprobe_dump.flows", "header_only.csv",
])
def test_detected_from_content(nf: Path, name: str) -> None:
    (source,) = open_sources(nf / name)
    assert detect_format(source).name == "nprobe"


@pytest.mark.parametrize("name", ["nf_unsw_nb15_v3.csv", "nprobe_dump.flows"])
def test_fast_and_careful_paths_agree(nf: Path, name: str) -> None:
    (source,) = open_sources(nf / name)
    line = read_header(source)
    delimiter = nprobe._delimiter(line)
    header = line.split(delimiter)
    columns = [f"c{i}" for i in range(len(header))]
    layout = nprobe.find_layout(header, source.name, columns)
    assert layout is not None
    with source.open() as stream:
        (batch,) = read_delimited(stream, source.name, delimiter=delimiter, columns=columns, skip_lines=1)
    fast, clean = nprobe._fast_candidates(batch.fields, layout)
    careful = nprobe._careful_candidates(batch.fields, layout)
    assert clean.sum() >= 2
    assert careful.filter(clean)["reject"].null_count() == clean.sum()
    assert fast.filter(clean).equals(careful.filter(clean))
    # rows the fast path gives up on carry the reason (bytes without packets is check()'s to find)
    assert careful.filter(~clean)["reject"].null_count() == 0
