"""The filter parser and compiler: errors with carets, precedence, refusals, the label extension.

Agreement with the real nfdump is in ``test_filter_nfdump.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.read import ReadOptions
from netflowgen.read.filter import FilterError, FilterUndecided, compile_filter
from netflowgen.schema import FLOW_SCHEMA

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _flows() -> pl.DataFrame:
    rows = [  # src, dst, sport, dport, proto, packets, bytes, rev_packets, flags, duration ms, label
        ("10.0.0.1", "10.0.0.2", 40000, 80, 6, 3, 180, 2, 2 | 16, 1500, "DDoS"),
        ("10.0.0.2", "10.0.0.1", 80, 40000, 6, 1, 40, 0, 2, 0, None),
        ("2001:db8::1", "2001:db8:0:0::53", 5353, 53, 17, 1, 70, 1, None, 0, "Benign"),
        ("192.168.1.5", "8.8.8.8", None, None, 47, 10, 2000, 0, None, 12, None),
    ]
    return pl.DataFrame(
        {
            "ts_start": [T0] * len(rows),
            "ts_end": [T0 + timedelta(milliseconds=r[9]) for r in rows],
            "src_ip": [r[0] for r in rows], "dst_ip": [r[1] for r in rows],
            "src_port": [r[2] for r in rows], "dst_port": [r[3] for r in rows], "proto": [r[4] for r in rows],
            "fwd_packets": [r[5] for r in rows], "fwd_bytes": [r[6] for r in rows],
            "rev_packets": [r[7] for r in rows], "rev_bytes": [0] * len(rows), "tcp_flags": [r[8] for r in rows],
            "label": [r[10] for r in rows], "label_detail": [None] * len(rows), "quality": [0] * len(rows),
            "source_file": ["x"] * len(rows), "source_row": list(range(1, len(rows) + 1)),
        },
        schema=FLOW_SCHEMA,
    )


def rows(expr: str) -> list[int]:
    return compile_filter(expr).apply(_flows())["source_row"].to_list()


@pytest.mark.parametrize(("expr", "expected"), [
    ("any", [1, 2, 3, 4]),
    ("proto tcp or proto udp and dst port 53", [1, 2, 3]),  # and binds tighter than or
    ("(proto tcp or proto udp) and dst port 53", [3]),
    ("not proto tcp and not proto udp", [4]),  # not binds tightest
    ("net 2001:db8::/32", [3]),
    ("dst ip 2001:db8::53", [3]),  # the data spells it 2001:db8:0:0::53
    ("port 0", [4]),  # GRE has no ports: nfdump's are 0
    ("packets > 2", [1, 4]),  # forward packets only
    ("out packets > 0", [1, 3]),
    ("bytes >= 2k", [4]),
    ("duration > 1000", [1]),
    ("flags S", [1, 2]),
    ("flags SA", [1]),
    ("not flags SA", [3, 4]),  # none of S and A: not the complement of `flags SA`
    ("flags S and not flags A", [2]),
    ("label DDoS", [1]),
    ('label "Benign"', [3]),
    ("src and dst net 10.0.0.0/8", [1, 2]),
    ("ip in [8.8.8.8 2001:db8::/64]", [3, 4]),
])
def test_selects(expr: str, expected: list[int]) -> None:
    assert rows(expr) == expected


def test_compiles_once_and_streams(tmp_path: Path) -> None:
    _flows().write_parquet(tmp_path / "f.parquet")
    f = compile_filter("proto tcp and port 80")
    assert compile_filter("proto tcp and port 80") is f
    lazy = f.apply(pl.scan_parquet(tmp_path / "f.parquet"))
    assert lazy.collect(engine="streaming")["source_row"].to_list() == [1, 2]


@pytest.mark.parametrize(("expr", "message", "caret"), [
    ("port", "expected a port number after 'port', found the end of the filter", "    ^"),
    ("proto tcp and dst port abc", "expected a port number after 'port', found 'abc'", "                       ^^^"),
    ("proto tcpx", "unknown protocol", "      ^^^^"),
    ("src port 70000", "port outside of range 0..65535", "         ^^^^^"),
    ("(proto tcp", "expected ')' to close the '('", "          ^"),
    ("proto tcp or", "expected a filter primitive", "            ^"),
    ("flags sa", "flag letters are upper case", "      ^^"),
    ("net 10.0.0.0/33", "too many netbits", "    ^^^^^^^^^^^"),
    ("ip 10.0.0.1/32", "use 'net' for a prefix", "   ^^^^^^^^^^^"),
    ("proto tcp port 80", "expected 'and', 'or' or the end of the filter", "          ^^^^"),
    ("vlan 12", "needs VLAN ids, which the flow table does not keep", "^^^^"),
    ("icmp-type 8", "needs ICMP types", "^^^^^^^^^"),
    ("", "the filter is empty", "^"),
])
def test_errors_show_a_caret(expr: str, message: str, caret: str) -> None:
    with pytest.raises(FilterError) as e:
        compile_filter(expr)
    lines = str(e.value).splitlines()
    assert message in lines[0]
    assert lines[1] == "  " + expr
    assert lines[2] == "  " + caret


def test_icmp_dst_port_is_refused_not_guessed() -> None:
    icmp = _flows().with_columns(pl.lit(1, pl.UInt8).alias("proto"), pl.lit(None, pl.UInt16).alias("dst_port"))
    with pytest.raises(FilterUndecided, match="cannot decide 4 flows"):
        compile_filter("dst port 2048").apply(icmp)
    assert compile_filter("src port 0").apply(icmp).height == 4  # nfdump's ICMP src port is 0
    assert compile_filter("proto udp and dst port 53").apply(icmp).height == 0


def test_tcp_without_flags_is_refused() -> None:
    with pytest.raises(FilterUndecided):
        compile_filter("flags S").apply(_flows().with_columns(pl.lit(None, pl.UInt8).alias("tcp_flags")))


def test_read_options_check_the_filter() -> None:
    with pytest.raises(FilterError, match="expected a number after 'packets'"):
        ReadOptions(filter="packets > x")
    assert ReadOptions(filter="proto udp").select(_flows()).height == 1


def test_cli_bad_filter_fails_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "flows.parquet"
    _flows().write_parquet(src)
    result = CliRunner().invoke(app, ["ingest", str(src), "--out", str(tmp_path / "ds"), "--filter", "port >", "-q"])
    assert result.exit_code != 0
    assert "expected a port number after 'port'" in result.output and "      ^" in result.output
    assert not (tmp_path / "ds").exists()


def test_cli_ingest_and_inspect_filter(tmp_path: Path) -> None:
    src = tmp_path / "flows.parquet"
    _flows().write_parquet(src)
    result = CliRunner().invoke(app, ["ingest", str(src), "--out", str(tmp_path / "ds"), "--filter", "proto tcp", "--json"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "ds" / "date=*" / "*.parquet").height == 2
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "ds"), "--filter", "flags SA", "--json"])
    assert result.exit_code == 0, result.output
    assert '"flows_before_filter": 2' in result.output and '"flows": 1' in result.output
