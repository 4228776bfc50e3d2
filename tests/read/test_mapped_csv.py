"""The user-mapped CSV (format ``csv``): mapping files, authored CSVs, the shipped Westermo mapping."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from netflowgen.read import FormatError, ReadOptions, get_format, iter_checked, read_flows
from netflowgen.read.mapped_csv import load_mapping, resolve_mapping, shipped_mappings
from netflowgen.schema import FLOW_SCHEMA, Quality


def read(path: Path, mapping: str | Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    flows, rejects = [], []
    for _source, fmt, checked in iter_checked(path, ReadOptions(mapping=mapping, **options)):  # type: ignore[arg-type]
        assert fmt.name == "csv"
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects).sort("source_row")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_never_sniffed() -> None:
    fmt = get_format("csv")
    assert not fmt.sniff(b"start,end,sIPs,rIPs,protocol\n1,2,10.0.0.1,10.0.0.2,IPV4-TCP\n", "flows.csv")


def test_custom_layout(fixtures: Path) -> None:
    folder = fixtures / "csv"
    flows, rejects = read(folder / "custom.csv", folder / "custom.toml")
    assert flows.schema == pl.Schema(FLOW_SCHEMA)
    assert flows["source_row"].to_list() == [2, 3, 4, 6]
    tcp, udp, icmp6, gre = flows.iter_rows(named=True)
    # Local Berlin summer time (UTC+2), fractions kept.
    assert (tcp["ts_start"], tcp["ts_end"]) == (utc(2024, 6, 1, 10, 0, 0, 250000), utc(2024, 6, 1, 10, 0, 1, 750000))
    assert (tcp["src_port"], tcp["dst_port"], tcp["proto"], tcp["tcp_flags"]) == (40000, 443, 6, 2 | 16)
    assert (tcp["fwd_packets"], tcp["fwd_bytes"], tcp["rev_packets"], tcp["rev_bytes"]) == (10, 1200, 8, 6400)
    assert (tcp["label"], tcp["label_detail"]) == ("attack", "syn-flood")
    assert (udp["proto"], udp["tcp_flags"], udp["label_detail"]) == (17, None, None)  # "-" is no detail
    # Quotes around fields are removed; IPv6 is normalised; ICMPv6 has no ports.
    assert (icmp6["src_ip"], icmp6["dst_ip"], icmp6["proto"], icmp6["src_port"]) == ("2001:db8::1", "2001:db8::2", 58, None)
    assert gre["proto"] == 47  # from the mapping's values table
    assert rejects.select("source_row", "reason").rows() == [
        (5, "not an IP flow: protocol arp"),
        (7, "pkts: cannot parse lots"),
        (8, "src_ip holds several addresses (client): 192.0.2.14 192.0.2.15"),
        (9, "expected 14 fields, found 6"),
        (10, "when: cannot parse yesterday"),
    ]
    assert rejects["raw"][0].startswith("2024-06-01 12:00:05;2024-06-01 12:00:05;00:11:22:33:44:55;")


def test_headerless_layout_with_duration_and_unidirectional_counters(fixtures: Path) -> None:
    folder = fixtures / "csv"
    flows, rejects = read(folder / "no_header.csv", folder / "no_header.toml")
    columns = ("source_row", "ts_start", "ts_end", "proto", "fwd_packets", "rev_packets", "rev_bytes", "quality")
    assert flows.select(columns).rows() == [
        (2, utc(2024, 6, 1, 12, 0, 0), utc(2024, 6, 1, 12, 0, 1, 500000), 6, 5, 0, 0, 0),
        (3, utc(2024, 6, 1, 12, 0, 1), utc(2024, 6, 1, 12, 0, 1), 17, 1, 0, 0, Quality.NO_END),
    ]
    assert rejects.select("source_row", "reason").rows() == [(4, "expected 7 fields, found 6")]


def test_mapping_timezone_wins_over_the_option(fixtures: Path) -> None:
    folder = fixtures / "csv"
    flows, _ = read(folder / "custom.csv", folder / "custom.toml", timezone="America/New_York")
    assert flows["ts_start"][1] == utc(2024, 6, 1, 10, 0, 2)


def test_read_flows_with_a_mapping_path(fixtures: Path) -> None:
    folder = fixtures / "csv"
    flows = read_flows(folder / "custom.csv", mapping=folder / "custom.toml")
    assert flows.height == 4


# --- the mapping file -----------------------------------------------------------------------------

BASE = """
[columns]
ts_start = "t"
src_ip = "s"
dst_ip = "d"
proto = "p"
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("delimter = ';'\n" + BASE, r"unknown key 'delimter'"),
        (BASE + "colour = 'x'\n", r"unknown column 'columns\.colour'"),
        (BASE + "label = { field = 'l', type = 'int' }\n", r"unknown key columns\.label\.type"),
        (BASE.replace('ts_start = "t"', "ts_start = { field = 't', unit = 'hours' }"),
         r"columns\.ts_start\.unit must be one of s, ms, us, ns"),
        (BASE.replace('ts_start = "t"', "ts_start = { field = 't', type = 'iso' }"),
         r"columns\.ts_start\.type must be one of epoch, datetime"),
        (BASE.replace('ts_start = "t"', "ts_start = { unit = 's' }"), r"columns\.ts_start needs field"),
        (BASE.replace('proto = "p"', ""), r"must map proto"),
        (BASE + "ts_end = 'e'\nduration = 'u'\n", r"either columns\.ts_end or columns\.duration"),
        (BASE.replace('ts_start = "t"', "ts_start = { field = 't', timezone = 'UTC' }"),
         r"columns\.ts_start\.timezone applies to type = 'datetime' only"),
        ("timezone = 'Mars/Olympus'\n" + BASE, r"timezone = 'Mars/Olympus' is not a known time zone"),
        ("delimiter = ';;'\n" + BASE, r"delimiter must be one character"),
        ("header = false\n" + BASE, r"header = false needs names"),
        (BASE.replace('proto = "p"', "proto = { field = 'p', pattern = 'IPV4-.+' }"),
         r"columns\.proto\.pattern needs a group"),
        (BASE.replace('proto = "p"', "proto = { field = 'p', values = { TCP = 6.5 } }"),
         r"columns\.proto\.values\.TCP must be a protocol number or name"),
        ("[columns\n", r"not valid TOML"),
        ("delimiter = ','\n", r"needs a \[columns\] table"),
    ],
)
def test_mapping_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_mapping(path)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, FormatError)


def test_a_mapped_field_missing_from_the_header_is_a_format_error(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(BASE.replace('dst_ip = "d"', 'dst_ip = "dest"'))
    data = tmp_path / "flows.csv"
    data.write_text("t,s,d,p\n1700000000,10.0.0.1,10.0.0.2,6\n")
    expected = r"flows\.csv: mapping .*m\.toml names fields the file lacks \(dst_ip = 'dest'\); the file's fields are: t, s, d, p"
    with pytest.raises(FormatError, match=expected):
        read_flows(data, mapping=mapping)


def test_a_header_of_a_million_names_is_refused_in_one_pass(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.py (a damaged bz2 file, 10^5 inputs): each name's occurrences were
    # counted over the whole header, 10^12 comparisons for a 1 MiB line. Now one pass, and the
    # error lists ten of the repeated names and how many there are.
    mapping = tmp_path / "m.toml"
    mapping.write_text(BASE)
    data = tmp_path / "flows.csv"
    names = [f"n{i % 50_000}" for i in range(200_000)]  # 50,000 names, each 4 times
    data.write_text("t,s,d,p," + ",".join(names) + "\n1700000000,10.0.0.1,10.0.0.2,6\n")
    with pytest.raises(FormatError, match=r"flows\.csv: the header names n0, n1, n10, .*, \.\.\. \(50,000 names in all\) more than once"):
        read_flows(data, mapping=mapping)


def test_format_csv_without_a_mapping_says_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "flows.csv"
    data.write_text("t,s,d,p\n")
    with pytest.raises(ValueError, match=r"format csv reads a file through a column mapping.*westermo"):
        read_flows(data, format="csv")


def test_bare_names_resolve_to_shipped_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "westermo" in shipped_mappings()
    path = resolve_mapping("westermo")
    assert path.name == "westermo.toml" and path.parent.name == "mappings"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"no mapping named 'eastermo': shipped mappings are .*westermo"):
        resolve_mapping("eastermo")
    with pytest.raises(ValueError, match=r"mapping file .*nowhere\.toml does not exist"):
        resolve_mapping(tmp_path / "nowhere.toml")


def test_every_shipped_mapping_loads() -> None:
    names = shipped_mappings()
    assert [load_mapping(name).path.stem for name in names] == names
    assert len(names) >= 1


def test_westermo_mapping_on_an_authored_sample(fixtures: Path) -> None:
    flows, rejects = read(fixtures / "csv" / "westermo_sample.csv", "westermo")
    assert flows.select("source_row", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "label").rows() == [
        (3, 2, 1, 40, 0, 0, "Normal"),  # IPV4-2: IGMP
        (4, 17, 0, 0, 2, 72, "Normal"),
        (6, 6, 56, 6160, 62, 9996, "BAD-SSH"),  # two source MACs do not matter: sIPs holds one address
        (7, 1, 6, 672, 0, 0, "BAD-SSH"),
    ]
    assert flows["ts_start"][0] == utc(2023, 3, 10, 9, 29, 34, 966040)
    assert flows["src_port"].null_count() == 4 and flows["quality"].to_list() == [0, 0, 0, 0]
    assert rejects.select("source_row", "reason").rows() == [
        (2, "not an IP flow: protocol ARP"),
        (5, "not an IP flow: protocol LLDP"),
        (8, "src_ip holds several addresses (sIPs): 198.18.134.6/198.18.134.1"),
        (9, "sPackets: cannot parse two"),
        (10, "expected 64 fields, found 8"),
    ]


# --- the real Westermo flows ------------------------------------------------------------------------

# archive -> (flows, rejects by reason): the rejects are exactly the ARP and LLDP records.
WESTERMO_FILES = {
    "data_reduced_flows_output_bottom.zip": (31860, {"not an IP flow: protocol ARP": 3001, "not an IP flow: protocol LLDP": 543}),
    "data_reduced_flows_output_left.zip": (5018, {"not an IP flow: protocol ARP": 2972, "not an IP flow: protocol LLDP": 543}),
    "data_reduced_flows_output_right.zip": (1296, {"not an IP flow: protocol ARP": 2881, "not an IP flow: protocol LLDP": 543}),
}


def independent_rows(archive: Path) -> dict[int, dict[str, str]]:
    """Data rows by line number, read from the zip member with the csv module."""
    with zipfile.ZipFile(archive) as z:
        (member,) = [n for n in z.namelist() if n.endswith(".csv")]
        text = z.read(member).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return {reader.line_num: row for row in reader}


@pytest.mark.shared_data
def test_every_westermo_archive_is_listed(shared_data: Path) -> None:
    assert {p.name for p in (shared_data / "westermo").glob("*.zip")} == set(WESTERMO_FILES)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(WESTERMO_FILES))
def test_westermo_rows_and_totals(shared_data: Path, name: str) -> None:
    archive = shared_data / "westermo" / name
    expected_flows, expected_rejects = WESTERMO_FILES[name]
    flows, rejects = read(archive, "westermo")
    rows = independent_rows(archive)

    assert flows.height + rejects.height == len(rows)
    assert flows.height == expected_flows
    assert dict(Counter(rejects["reason"])) == expected_rejects
    assert set(flows["source_row"]) | set(rejects["source_row"]) == set(rows)
    assert Counter(rows[n]["protocol"] for n in rejects["source_row"]) == Counter(
        r["protocol"] for r in rows.values() if not r["protocol"].startswith("IPV4-")
    )

    kept = [rows[n] for n in flows["source_row"]]
    for column, field in (("fwd_packets", "sPackets"), ("rev_packets", "rPackets"),
                          ("fwd_bytes", "sBytesSum"), ("rev_bytes", "rBytesSum")):
        assert flows[column].sum() == sum(int(r[field]) for r in kept), column
    assert dict(Counter(flows["label"])) == dict(Counter(r["IT_M_Label"] for r in kept))
    assert flows["src_ip"].to_list() == [r["sIPs"] for r in kept]


@pytest.mark.shared_data
def test_read_flows_with_the_shipped_name(shared_data: Path) -> None:
    flows = read_flows(shared_data / "westermo" / "data_reduced_flows_output_right.zip", mapping="westermo")
    assert flows.height == 1296
    assert flows["ts_start"].min() == utc(2023, 3, 10, 9, 29, 40, 548170)
    assert flows["source_file"][0].endswith("data_reduced_flows_output_right.zip:output_right.csv")
