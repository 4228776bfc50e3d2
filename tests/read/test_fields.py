"""Field parsers: exact values for what sources write, a reason for what does not parse."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from netflowgen.read.fields import (
    Parsed,
    first_reason,
    materialize,
    parse_datetime,
    parse_epoch,
    parse_float,
    parse_int,
    parse_port,
    parse_proto,
    parse_tcp_flag_letters,
    parse_zeek_history,
    unset,
)

UTC = timezone.utc


def run(parsed: Parsed, values: list[str | None]) -> list[tuple]:
    """(value, reason) for each input string."""
    df = pl.DataFrame({"s": values}, schema={"s": pl.String})
    return df.select(parsed.value.alias("v"), parsed.reason.alias("r")).rows()


def epoch_us(values: list[str | None], unit_seconds: float = 1.0) -> list[tuple]:
    """Epoch parses as (microseconds since 1970, reason): exact integers, no float rounding."""
    p = parse_epoch(pl.col("s"), "ts", unit_seconds)
    df = pl.DataFrame({"s": values}, schema={"s": pl.String})
    return df.select(p.value.dt.epoch("us").alias("v"), p.reason.alias("r")).rows()


S = pl.col("s")


def test_unset_markers_become_null():
    df = pl.DataFrame({"s": ["", "-", " - ", "x", " y ", None]})
    assert df.select(unset(S)).to_series().to_list() == [None, None, None, "x", "y", None]
    assert df.select(unset(S, ("x",))).to_series().to_list() == ["", "-", "-", None, "y", None]


def test_parse_int():
    values = ["12", " 7 ", "+5", "-3", "0x1f", "0X1F", "12.0", "1e3", "9223372036854775807", "-", "", None]
    assert run(parse_int(S, "n"), values) == [
        (12, None), (7, None), (5, None), (-3, None), (31, None), (31, None), (12, None), (1000, None),
        (9223372036854775807, None), (None, None), (None, None), (None, None),
    ]


@pytest.mark.parametrize("text", ["12.5", "abc", "0x", "0xZZ", "nan", "inf", "1_000", "1 2", "99999999999999999999"])
def test_parse_int_rejects_what_is_not_an_integer(text):
    assert run(parse_int(S, "orig_pkts"), [text]) == [(None, f"orig_pkts: cannot parse {text}")]


def test_parse_int_reason_quotes_at_most_60_characters():
    text = "z" * 100
    assert run(parse_int(S, "n"), [text]) == [(None, "n: cannot parse " + "z" * 60)]


def test_parse_int_custom_unset_markers():
    assert run(parse_int(S, "n", markers=("", "-", "N/A")), ["N/A", "4"]) == [(None, None), (4, None)]


def test_parse_port_is_an_integer_parse():
    assert run(parse_port(S, "sport"), ["0x0303", "80", "http"]) == [
        (771, None), (80, None), (None, "sport: cannot parse http"),
    ]


def test_parse_float():
    values = ["3.139211", "12", "-0.5", "1e-3", " 2.5 ", "-", "", "abc", "nan", "inf", "0x10"]
    assert run(parse_float(S, "duration"), values) == [
        (3.139211, None), (12.0, None), (-0.5, None), (0.001, None), (2.5, None), (None, None),
        (None, None), (None, "duration: cannot parse abc"), (None, "duration: cannot parse nan"),
        (None, "duration: cannot parse inf"), (None, "duration: cannot parse 0x10"),
    ]


def test_parse_epoch_keeps_exact_microseconds():
    values = [
        "1545403816.962094",  # IoT-23
        "1545403816",  # no fraction
        "1545403816.",  # a dot and no digits
        "1545403816.5",  # short fraction
        "1.1234567",  # beyond microseconds: cut, not rounded
        "0.000001",
        "19.981745",  # a relative clock near 1970
        " 5.5 ",
    ]
    assert epoch_us(values) == [
        (1545403816962094, None), (1545403816000000, None), (1545403816000000, None),
        (1545403816500000, None), (1123456, None), (1, None), (19981745, None), (5500000, None),
    ]


def test_parse_epoch_negative():
    assert epoch_us(["-1.5", "-0.25", "-0", "-0.5", "-86400"]) == [
        (-1500000, None), (-250000, None), (0, None), (-500000, None), (-86400000000, None),
    ]


def test_parse_epoch_value_is_utc_datetime():
    df = pl.DataFrame({"s": ["1545403816.962094"]})
    p = parse_epoch(S, "ts")
    out = df.select(p.value).to_series()
    assert out.dtype == pl.Datetime("us", "UTC")
    assert out.to_list() == [datetime(2018, 12, 21, 14, 50, 16, 962094, tzinfo=UTC)]


@pytest.mark.parametrize("text", ["abc", "1e9", "12:00", "1.2.3", "--1", "0x10"])
def test_parse_epoch_rejects_what_is_not_epoch_seconds(text):
    assert epoch_us([text]) == [(None, f"ts: cannot parse {text}")]


@pytest.mark.parametrize(
    "text", ["9223372036855", "18446744073709.551615", "1545403816962094.1", "99999999999999999", "-9223372036855"]
)
def test_parse_epoch_out_of_range_is_a_reason_not_a_wrapped_value(text):
    # Seconds * 10**6 beyond Int64 used to wrap around silently into a plausible date.
    assert epoch_us([text]) == [(None, f"ts: cannot parse {text}")]


def test_parse_epoch_largest_accepted_seconds():
    assert epoch_us(["999999999999.999999"]) == [(999999999999999999, None)]


def test_parse_epoch_unset():
    assert epoch_us(["-", "", None]) == [(None, None), (None, None), (None, None)]


def test_parse_epoch_in_milliseconds():
    assert epoch_us(["1545403816962", "1545403816962.5", "x"], unit_seconds=0.001) == [
        (1545403816962000, None), (1545403816962500, None), (None, "ts: cannot parse x"),
    ]


def test_parse_datetime_utc():
    fmt = "%Y/%m/%d %H:%M:%S%.f"
    df = pl.DataFrame({"s": ["2018/12/21 14:50:00.123456", "2018/12/21 14:50:00", "bad", "-"]})
    p = parse_datetime(S, "StartTime", fmt)
    assert df.select(p.value.alias("v"), p.reason.alias("r")).rows() == [
        (datetime(2018, 12, 21, 14, 50, 0, 123456, tzinfo=UTC), None),
        (datetime(2018, 12, 21, 14, 50, tzinfo=UTC), None),
        (None, "StartTime: cannot parse bad"),
        (None, None),
    ]


def test_parse_datetime_local_time_zone():
    fmt = "%Y/%m/%d %H:%M:%S"
    df = pl.DataFrame({"s": ["2018/12/21 14:50:00", "2018/07/01 12:00:00", "2021/03/28 02:30:00", "2021/10/31 02:30:00"]})
    p = parse_datetime(S, "StartTime", fmt, "Europe/Prague")
    assert df.select(p.value.alias("v"), p.reason.alias("r")).rows() == [
        (datetime(2018, 12, 21, 13, 50, tzinfo=UTC), None),  # CET = UTC+1
        (datetime(2018, 7, 1, 10, 0, tzinfo=UTC), None),  # CEST = UTC+2
        (None, "StartTime: cannot parse 2021/03/28 02:30:00"),  # skipped hour: does not exist
        (datetime(2021, 10, 31, 0, 30, tzinfo=UTC), None),  # repeated hour: the earlier one
    ]


def test_parse_proto_names_and_numbers():
    values = ["tcp", "TCP", " udp ", "6", "17", "icmp", "ipv6-icmp", "icmp6", "sctp", "gre", "esp", "rtp", "udt", "0", "255"]
    assert run(parse_proto(S), values) == [
        (6, None), (6, None), (17, None), (6, None), (17, None), (1, None), (58, None), (58, None),
        (132, None), (47, None), (50, None), (17, None), (17, None), (0, None), (255, None),
    ]


def test_parse_proto_non_ip_unknown_and_missing():
    values = ["arp", "LLC", "man", "stp", "unknown_transport", "-", "", None]
    assert run(parse_proto(S, "Proto"), values) == [
        (None, "not an IP flow: protocol arp"),
        (None, "not an IP flow: protocol llc"),
        (None, "not an IP flow: protocol man"),
        (None, "not an IP flow: protocol stp"),
        (None, "Proto: unknown protocol unknown_transport"),
        (None, "Proto: missing"),
        (None, "Proto: missing"),
        (None, "Proto: missing"),
    ]


def test_parse_proto_out_of_range_numbers_are_left_to_validation():
    assert run(parse_proto(S), ["300", "-1"]) == [(300, None), (-1, None)]


def test_parse_tcp_flag_letters():
    values = ["...A.R..", "FSPA_FSPA", "S", "UAPRSF", "CE......", "ce", "xyz", "", "-", None]
    assert run(parse_tcp_flag_letters(S), values) == [
        (20, None), (27, None), (2, None), (63, None), (192, None), (192, None), (0, None),
        (None, None), (None, None), (None, None),
    ]


def test_parse_zeek_history():
    values = ["S", "ShADadFf", "ShADadttcfF", "Sr", "ShR", "Dd", "^hADadfF", "HhA", "-", ""]
    assert run(parse_zeek_history(S), values) == [
        (2, None), (19, None), (19, None), (6, None), (22, None), (0, None), (19, None), (18, None),
        (None, None), (None, None),
    ]


def test_first_reason_takes_the_first_non_null():
    df = pl.DataFrame({"a": [None, "a bad", None], "b": ["b bad", "b bad", None]}, schema={"a": pl.String, "b": pl.String})
    assert df.select(first_reason(pl.col("a"), pl.col("b"))).to_series().to_list() == ["b bad", "a bad", None]
    assert df.select(first_reason()).to_series().to_list() == [None]


# --- fast paths: a plain cast first, the other forms only where it fails -----------------------

TRICKY = [
    "12", "-3", "+5", "00012", " 7 ", "\t8", "0x1f", "0X1F", "0x", "12.0", "12.5", "1e3", "-0",
    "\uff11\uff12", "\u0663", "\u0661\u0662.5", "99999999999999999999", "9223372036854775807", "1709251200.123456",
    "1709251200.", "-1.5", "1.2.3", "nan", "inf", "tcp", " UDP ", "arp", "LLC", "bogus", "", "-", " - ", None,
]


@pytest.mark.parametrize(
    "make",
    [
        lambda: parse_int(S, "n"),
        lambda: parse_float(S, "n"),
        lambda: parse_epoch(S, "ts"),
        lambda: parse_epoch(S, "ts", 0.001),
        lambda: parse_proto(S, "pr"),
        lambda: parse_datetime(S, "ts", "%Y-%m-%d"),
    ],
    ids=["int", "float", "epoch", "epoch_ms", "proto", "datetime"],
)
def test_mixed_forms_in_one_column_parse_as_each_alone(make):
    # A column of common values with a few in other forms takes the fast path for most rows:
    # every row must come out as it does alone, and materialize() must give the same reasons.
    values = ["1", "2", *TRICKY, "3"] * 3
    alone = [run(make(), [v])[0] for v in values]
    assert run(make(), values) == alone
    df = pl.DataFrame({"s": values}, schema={"s": pl.String})
    fields, parsed = materialize(df, {"x": make()})
    assert fields.select(parsed["x"].value, parsed["x"].reason).rows() == alone


def test_fast_path_values_and_reasons():
    assert run(parse_int(S, "n"), ["7", "\u0663", "1e3", " 0x10 "]) == [
        (7, None), (None, "n: cannot parse \u0663"), (1000, None), (16, None),
    ]
    assert epoch_us(["\u0661\u0662.5", "+5", "5.+5", "5.-5"]) == [
        (None, "ts: cannot parse \u0661\u0662.5"), (None, "ts: cannot parse +5"),
        (None, "ts: cannot parse 5.+5"), (None, "ts: cannot parse 5.-5"),
    ]
    assert run(parse_proto(S), ["6", " 17 ", "TCP", "arp", "zzz", " ", None]) == [
        (6, None), (17, None), (6, None), (None, "not an IP flow: protocol arp"),
        (None, "proto: unknown protocol zzz"), (None, "proto: missing"), (None, "proto: missing"),
    ]


def test_flag_letters_from_distinct_values_keep_nulls_and_order():
    values = ["...A.R..", None, "-", "S", "...A.R..", " fs ", "", "S"]
    assert run(parse_tcp_flag_letters(S), values) == [
        (20, None), (None, None), (None, None), (2, None), (20, None), (3, None), (None, None), (2, None),
    ]
    assert run(parse_zeek_history(S), ["ShADadFf", None, "-", "ShADadFf", "^dDa"]) == [
        (19, None), (None, None), (None, None), (19, None), (16, None),
    ]
    assert run(parse_tcp_flag_letters(S), []) == []
