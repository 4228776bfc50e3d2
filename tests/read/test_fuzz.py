"""Property: a corrupted input never crashes a reader.

Every valid fixture under ``tests/read/fixtures`` (found when the test runs; files named
``*broken*``/``*bad*``, files no reader recognises and files meant to raise ``FormatError`` are
left out) is corrupted at random (bytes flipped, inserted, deleted; the file cut short; lines
duplicated or swapped; delimiters, NUL and 0xff bytes inserted) and read with the format detected
from the original file. pcap and nfcapd inputs are made at test time by ``tiny_capture`` and the
real nfpcapd (integration, fewer examples). The reader must either raise
``FormatError``/``ValueError`` naming the file, or yield batches in which every row is a flow or a
reject with a reason and a source row, and every flow obeys the canonical rules.

Runs are deterministic (``derandomize``); set NETFLOWGEN_FUZZ_EXAMPLES for a longer search and
NETFLOWGEN_FUZZ_RANDOM=1 for a random one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netflowgen.read import ReadOptions, detect_format, iter_checked
from netflowgen.read.source import compression_of, open_sources
from netflowgen.read.validate import REJECT_SCHEMA, Checked
from netflowgen.schema import FLOW_SCHEMA, MAX_VALID_TS

FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: Formats read through external programs (nfdump, nfpcapd): slower, fewer examples.
EXTERNAL_FORMATS = frozenset({"nfcapd", "pcap"})

EXAMPLES = int(os.environ.get("NETFLOWGEN_FUZZ_EXAMPLES", "50"))
EXTERNAL_EXAMPLES = max(1, EXAMPLES // 5)
FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=not os.environ.get("NETFLOWGEN_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Fixture:
    path: Path
    format: str
    text: bool
    """Plain text: every row is a line, so rows can be counted against lines."""

    def __str__(self) -> str:
        return str(self.path.relative_to(FIXTURES)) if self.path.is_relative_to(FIXTURES) else self.path.name


def _is_plain_text(data: bytes) -> bool:
    if compression_of(data[:8]) is not None or b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def discover_fixtures() -> list[Fixture]:
    """Every fixture file a reader recognises, except the deliberately broken ones."""
    found = []
    for path in sorted(FIXTURES.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or name.startswith(".") or "broken" in name or "bad" in name:
            continue
        try:
            fmt = detect_format(open_sources(path)[0])
        except (ValueError, OSError):  # FormatError is a ValueError: not a flow file (empty, a mapping, ...)
            continue
        found.append(Fixture(path, fmt.name, _is_plain_text(path.read_bytes())))
    return found


ALL_FIXTURES = discover_fixtures()
#: Fixtures of feature tables without addresses or flow times: a FormatError naming the file.
REFUSED_FIXTURES = {"cicids2017_machinelearningcve.csv", "cseids2018_processed.csv", "nf_unsw_nb15_v1.csv", "nf_uq_nids_v2.csv"}
#: Fixtures holding a header and no flow: no rows, and no error.
EMPTY_FIXTURES = {"header_only.csv", "no_match.csv"}


def readable(fixtures: list[Fixture]) -> list[Fixture]:
    """The fixtures whose original reads without a FormatError (some are meant to raise one)."""
    return [f for f in fixtures if read_corrupted(f, f.path.read_bytes()) is not None]

# --- corruption --------------------------------------------------------------------------------

_POS = st.integers(0, 1 << 20)
_DELIMITERS = [b"\t", b",", b" ", b"   ", b";", b"|", b"\n", b"\r\n", b"\r", b"#"]
_SPECIAL = [b"\x00", b"\xff", b"\xff\xfe", b"\x80", b"\xc3", b"\x00\x00\x00\x00", b"\xef\xbb\xbf"]

CORRUPTION = st.one_of(
    st.tuples(st.just("flip"), _POS, st.integers(1, 255)),
    st.tuples(st.just("insert"), _POS, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _POS, st.integers(1, 32)),
    st.tuples(st.just("truncate"), _POS),
    st.tuples(st.just("duplicate_line"), _POS),
    st.tuples(st.just("swap_lines"), _POS, _POS),
    st.tuples(st.just("delimiter"), _POS, st.sampled_from(_DELIMITERS)),
    st.tuples(st.just("special"), _POS, st.sampled_from(_SPECIAL)),
)


def corrupt(data: bytes, op: tuple) -> bytes:
    """Apply one corruption; positions wrap around the current length."""
    kind, pos = op[0], op[1] % (len(data) + 1)
    if kind == "flip":
        if not data:
            return data
        pos %= len(data)
        return data[:pos] + bytes([data[pos] ^ op[2]]) + data[pos + 1 :]
    if kind in ("insert", "delimiter", "special"):
        return data[:pos] + op[2] + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + op[2] :]
    if kind == "truncate":
        return data[:pos]
    lines = data.splitlines(keepends=True)
    if not lines:
        return data
    i = op[1] % len(lines)
    if kind == "duplicate_line":
        lines.insert(i, lines[i])
    else:  # swap_lines
        j = op[2] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


# --- the property ------------------------------------------------------------------------------


def _n_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def check_batches(batches: list[Checked], fixture: Fixture, data: bytes) -> int:
    """Assert the reader contract on the batches of one input; return the rows seen."""
    rows: list[int] = []
    for checked in batches:
        flows, rejects = checked.flows, checked.rejects
        assert dict(flows.schema) == FLOW_SCHEMA
        assert dict(rejects.schema) == REJECT_SCHEMA
        assert rejects["source_row"].null_count() == 0, "a reject without its source row"
        assert rejects["source_file"].null_count() == 0
        reasons = rejects["reason"].fill_null("").str.strip_chars()
        assert (reasons != "").all(), "a reject without a reason"
        assert flows["source_row"].null_count() == 0, "a flow without its source row"
        bad = flows.filter(
            pl.col("ts_start").is_null() | pl.col("ts_end").is_null() | (pl.col("ts_end") < pl.col("ts_start"))
            | (pl.col("ts_start") >= MAX_VALID_TS) | (pl.col("ts_end") >= MAX_VALID_TS)
            | pl.col("src_ip").is_null() | pl.col("dst_ip").is_null() | pl.col("proto").is_null()
            | pl.col("quality").is_null()
        )
        assert bad.height == 0, f"flows that break the canonical rules: {bad.head(3)}"
        rows += flows["source_row"].to_list() + rejects["source_row"].to_list()
    if fixture.text:
        n_lines = _n_lines(data)
        assert len(rows) <= n_lines, f"{len(rows)} rows from {n_lines} lines"
        assert len(rows) == len(set(rows)), "a line counted twice"
        assert all(1 <= r <= n_lines for r in rows), "a source row beyond the lines of the file"
    return len(rows)


def read_corrupted(fixture: Fixture, data: bytes) -> int | None:
    """Read corrupted bytes under the fixture's name; the rows seen, or None for a named error."""
    with tempfile.TemporaryDirectory(prefix="netflowgen-fuzz-") as tmp:
        path = Path(tmp) / fixture.path.name
        path.write_bytes(data)
        try:
            batches = [checked for _source, _fmt, checked in iter_checked(path, ReadOptions(format=fixture.format))]
        except ValueError as e:  # FormatError included
            assert path.name in str(e), f"the error does not name the file: {e!r}"
            return None
    return check_batches(batches, fixture, data)


def _fuzz(fixtures: list[Fixture], max_examples: int) -> Counter:
    """Run the property over ``fixtures``; count the examples checked per format."""
    checked: Counter = Counter()

    @settings(max_examples=max_examples, **FUZZ_SETTINGS)
    @given(fixture=st.sampled_from(fixtures), ops=st.lists(CORRUPTION, min_size=1, max_size=4))
    def property_holds(fixture: Fixture, ops: list[tuple]) -> None:
        data = fixture.path.read_bytes()
        for op in ops:
            data = corrupt(data, op)
        read_corrupted(fixture, data)
        checked[fixture.format] += 1

    property_holds()
    return checked


def test_fixtures_are_found():
    assert len(ALL_FIXTURES) > 0, f"no fixture under {FIXTURES} is recognised: nothing to fuzz"
    assert {f.format for f in ALL_FIXTURES} >= {"zeek", "zeek-json"}


@pytest.mark.parametrize(
    "fixture",
    [pytest.param(f, id=str(f), marks=[pytest.mark.integration] if f.format in EXTERNAL_FORMATS else [])
     for f in ALL_FIXTURES],
)
def test_uncorrupted_fixture_meets_the_contract(fixture):
    # The contract holds (read_corrupted checks rows = flows + rejects against the file), and
    # each fixture gives what it was written for: rows, none (a header only), or a FormatError
    # naming the file (feature tables without addresses or timestamps, meant to be refused).
    rows = read_corrupted(fixture, fixture.path.read_bytes())
    if fixture.path.name in REFUSED_FIXTURES:
        assert rows is None, f"{fixture} should be refused"
    elif fixture.path.name in EMPTY_FIXTURES:
        assert rows == 0
    else:
        assert rows is not None and rows > 0, f"{fixture} read {rows} rows"


def test_corrupted_inputs_never_crash():
    fixtures = readable([f for f in ALL_FIXTURES if f.format not in EXTERNAL_FORMATS])
    assert len(fixtures) > 0, f"no readable fixture under {FIXTURES}: nothing to fuzz"
    checked = _fuzz(fixtures, EXAMPLES)
    assert sum(checked.values()) >= min(EXAMPLES, 10), f"too few examples checked: {dict(checked)}"


def _generated_external_fixtures(work: Path) -> list[Fixture]:
    """Binary inputs made at test time by the real tools (no binary fixtures are committed):
    the tiny capture as pcap and pcapng, and the nfcapd file nfpcapd makes of it."""
    from tests.read import tiny_capture

    made = [tiny_capture.write_pcap(work / "tiny.pcap"), tiny_capture.write_pcap(work / "tiny.pcapng", "pcapng")]
    made.append(tiny_capture.nfpcapd(made[0], work / "nfcapd"))
    return [Fixture(path, detect_format(open_sources(path)[0]).name, False) for path in made]


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nfpcapd") is None or shutil.which("nfdump") is None,
                    reason="nfdump/nfpcapd are not installed (apt-get install nfdump)")
def test_corrupted_external_inputs_never_crash(tmp_path):
    committed = readable([f for f in ALL_FIXTURES if f.format in EXTERNAL_FORMATS])
    fixtures = committed + _generated_external_fixtures(tmp_path)
    assert {f.format for f in fixtures} >= EXTERNAL_FORMATS
    checked = _fuzz(fixtures, EXTERNAL_EXAMPLES)
    assert sum(checked.values()) >= EXTERNAL_EXAMPLES, f"too few examples checked: {dict(checked)}"


def test_corrupt_operations():
    data = b"ab\ncd\nef"
    assert corrupt(data, ("flip", 0, 1)) == b"`b\ncd\nef"
    assert corrupt(data, ("insert", 2, b"XY")) == b"abXY\ncd\nef"
    assert corrupt(data, ("delete", 1, 3)) == b"ad\nef"
    assert corrupt(data, ("truncate", 4)) == b"ab\nc"
    assert corrupt(data, ("duplicate_line", 1)) == b"ab\ncd\ncd\nef"
    assert corrupt(data, ("swap_lines", 0, 2)) == b"ef" + b"cd\n" + b"ab\n"
    assert corrupt(data, ("special", 9, b"\x00")) == b"\x00ab\ncd\nef"  # 9 wraps to 0
    assert corrupt(b"", ("flip", 3, 7)) == b""
