"""The delimited-text engine: exact line numbers, rejects for rows it cannot split, any block size."""

from __future__ import annotations

import io

import polars as pl
import pytest

from netflowgen.read.text import (
    _has_bad_bytes,
    attach_lines,
    attach_raw,
    iter_line_blocks,
    read_delimited,
)
from netflowgen.read.validate import REJECT_SCHEMA

COLS = ["a", "b", "c"]


def read_all(
    data: bytes,
    *,
    columns: list[str] = COLS,
    delimiter: str = ",",
    skip_lines: int = 0,
    block_bytes: int = 1 << 20,
    comment_prefix: str | None = "#",
) -> tuple[list[tuple], list[tuple]]:
    """All rows as (fields..., source_row) and all rejects as (source_row, reason, raw)."""
    rows: list[tuple] = []
    rejects: list[tuple] = []
    for batch in read_delimited(
        io.BytesIO(data), "in.csv", delimiter=delimiter, columns=columns, skip_lines=skip_lines,
        block_bytes=block_bytes, comment_prefix=comment_prefix,
    ):
        assert batch.fields.columns == [*columns, "source_row"]
        assert dict(batch.rejects.schema) == REJECT_SCHEMA
        assert batch.rejects["source_file"].to_list() == ["in.csv"] * batch.rejects.height
        rows += batch.fields.rows()
        rejects += batch.rejects.select("source_row", "reason", "raw").rows()
    return rows, sorted(rejects)


def test_line_numbers_count_header_blank_and_comment_lines():
    data = b"a,b,c\n\n1,2,3\n# a note\n\n4,5,6\n#a,b,c\n7,8,9\n"
    rows, rejects = read_all(data, skip_lines=1)
    assert rows == [("1", "2", "3", 3), ("4", "5", "6", 6), ("7", "8", "9", 8)]
    assert rejects == []


def test_whitespace_only_lines_are_blank():
    rows, rejects = read_all(b"   \n1,2,3\n \t \n4,5,6\n")
    assert rows == [("1", "2", "3", 2), ("4", "5", "6", 4)]
    assert rejects == []


def test_a_row_of_empty_fields_is_a_row_not_a_blank_line():
    rows, rejects = read_all(b",,\n1,2,3\n")
    assert rows == [("", "", "", 1), ("1", "2", "3", 2)]
    assert rejects == []


def test_crlf_line_endings():
    rows, rejects = read_all(b"a,b,c\r\n1,2,3\r\n\r\n4,5,6\r\n", skip_lines=1)
    assert rows == [("1", "2", "3", 2), ("4", "5", "6", 4)]
    assert rejects == []


def test_wrong_field_counts_are_rejects_with_line_and_text():
    data = b"1,2,3\n4,5\n6,7,8,9\n10,11,12\n13\n"
    rows, rejects = read_all(data)
    assert rows == [("1", "2", "3", 1), ("10", "11", "12", 4)]
    assert rejects == [
        (2, "expected 3 fields, found 2", "4,5"),
        (3, "expected 3 fields, found 4", "6,7,8,9"),
        (5, "expected 3 fields, found 1", "13"),
    ]


def test_invalid_utf8_lines_are_rejects():
    data = b"1,2,3\n4,\xff\xfe,6\n7,8,9\n\xc3(,x,y\n"
    rows, rejects = read_all(data)
    assert rows == [("1", "2", "3", 1), ("7", "8", "9", 3)]
    assert rejects == [
        (2, "invalid UTF-8 at byte 2 of the line", "4,\ufffd\ufffd,6"),
        (4, "invalid UTF-8 at byte 0 of the line", "\ufffd(,x,y"),
    ]


def test_stray_carriage_return_is_a_reject_and_keeps_line_numbers():
    # Arrow's parser ends a row at a lone CR: without care the line numbers would slip.
    data = b"1,2\r3\n4,5,6\n7,8,9\r\r\n10,11,12\n"
    rows, rejects = read_all(data)
    assert rows == [("4", "5", "6", 2), ("10", "11", "12", 4)]
    assert rejects == [
        (1, "carriage return inside the line at byte 3", "1,2\r3"),
        (3, "carriage return inside the line at byte 5", "7,8,9\r\r"),
    ]


def test_last_line_without_newline():
    rows, rejects = read_all(b"1,2,3\n4,5,6")
    assert rows == [("1", "2", "3", 1), ("4", "5", "6", 2)]
    assert rejects == []
    rows, _ = read_all(b"1,2,3\n4,5,6\r")
    assert rows == [("1", "2", "3", 1), ("4", "5", "6", 2)]


def test_truncated_last_line_is_a_reject():
    rows, rejects = read_all(b"1,2,3\n4,5,6\n7,8")
    assert rows == [("1", "2", "3", 1), ("4", "5", "6", 2)]
    assert rejects == [(3, "expected 3 fields, found 2", "7,8")]


def test_empty_and_header_only_input():
    assert read_all(b"") == ([], [])
    assert read_all(b"a,b,c\n", skip_lines=1) == ([], [])
    assert read_all(b"a,b,c", skip_lines=1) == ([], [])
    assert read_all(b"a,b,c\n\n\n", skip_lines=1) == ([], [])
    assert read_all(b"\n\n\n") == ([], [])


def test_quotes_are_plain_characters():
    rows, rejects = read_all(b'"1,2",3\n"x",y,"z\n')
    assert rows == [('"1', '2"', "3", 1), ('"x"', "y", '"z', 2)]
    assert rejects == []


def test_tab_delimiter_keeps_empty_fields_as_empty_strings():
    rows, rejects = read_all(b"1\t\t3\n\t\t\n", delimiter="\t")
    assert rows == [("1", "", "3", 1), ("", "", "", 2)]
    assert rejects == []


def test_without_comment_prefix_hash_lines_are_data():
    rows, rejects = read_all(b"#c\n#a,b,c\n", comment_prefix=None)
    assert rows == [("#a", "b", "c", 2)]
    assert rejects == [(1, "expected 3 fields, found 1", "#c")]


def test_long_bad_line_raw_text_is_cut_to_500_characters():
    line = b"x" * 2000
    _, rejects = read_all(b"1,2,3\n" + line + b"\n")
    assert rejects == [(2, "expected 3 fields, found 1", "x" * 500)]


def test_lines_longer_than_the_block_size():
    long_field = "y" * 5000
    data = f"1,2,3\n4,{long_field},6\n7,8,9\n".encode()
    rows, rejects = read_all(data, block_bytes=16)
    assert rows == [("1", "2", "3", 1), ("4", long_field, "6", 2), ("7", "8", "9", 3)]
    assert rejects == []


def test_skip_lines_spanning_several_blocks():
    data = b"h1\nh2\nh3 is long\n1,2,3\n4,5,6\n"
    rows, rejects = read_all(data, skip_lines=3, block_bytes=4)
    assert rows == [("1", "2", "3", 4), ("4", "5", "6", 5)]
    assert rejects == []


def _messy_input() -> bytes:
    """Every kind of line the engine must handle, repeated so that rows straddle small blocks."""
    parts = [b"a,b,c\n"]
    for i in range(40):
        parts += [
            f"{i},x{i},{i * 7}\n".encode(),
            b"\n",
            b"# comment, with, commas\n",
            f"{i},short\n".encode(),
            f"{i},too,many,fields\r\n".encode(),
            b"bad\xff,utf,8\n",
            b"cr\rinside,the,line\n",
            f"{i},crlf,row\r\n".encode(),
            b"   \n",
        ]
    parts.append(b"last,line,unterminated")
    return b"".join(parts)


@pytest.mark.parametrize("block_bytes", [1, 2, 7, 64, 333])
def test_small_blocks_give_the_same_rows_as_one_block(block_bytes):
    data = _messy_input()
    expected = read_all(data, skip_lines=1)
    got = read_all(data, skip_lines=1, block_bytes=block_bytes)
    assert got == expected
    rows, rejects = expected
    assert len(rows) == 40 * 2 + 1
    assert len(rejects) == 40 * 4
    assert rows[:2] == [("0", "x0", "0", 2), ("0", "crlf", "row", 9)]
    assert rows[-1] == ("last", "line", "unterminated", 1 + 40 * 9 + 1)
    assert rejects[:4] == [
        (5, "expected 3 fields, found 2", "0,short"),
        (6, "expected 3 fields, found 4", "0,too,many,fields"),
        (7, "invalid UTF-8 at byte 3 of the line", "bad\ufffd,utf,8"),
        (8, "carriage return inside the line at byte 2", "cr\rinside,the,line"),
    ]
    # Every line is a row, a reject, or blank/comment/header: none counted twice.
    lines = [r[-1] for r in rows] + [r[0] for r in rejects]
    assert len(lines) == len(set(lines))


@pytest.mark.parametrize("block_bytes", [1, 3, 5, 100])
def test_iter_line_blocks_cuts_at_line_ends(block_bytes):
    data = b"ab\ncdef\n\ng\nlast"
    blocks = list(iter_line_blocks(io.BytesIO(data), block_bytes))
    assert b"".join(blocks) == data
    assert all(b.endswith(b"\n") for b in blocks[:-1])
    assert blocks[-1].endswith(b"last")


def test_attach_raw_fills_raw_text_of_validation_rejects():
    fields = pl.DataFrame({"a": ["1", "4"], "b": ["2", None], "c": ["3", "6"], "source_row": [7, 9]})
    rejects = pl.DataFrame(
        {"source_file": ["f", "f"], "source_row": [9, 12], "reason": ["bad b", "kept"], "raw": [None, "original"]},
        schema=REJECT_SCHEMA,
    )
    out = attach_raw(rejects, fields, "\t")
    assert dict(out.schema) == REJECT_SCHEMA
    assert out.rows() == [("f", 9, "bad b", "4\t\t6"), ("f", 12, "kept", "original")]
    assert attach_raw(rejects.head(0), fields, ",").height == 0


@pytest.mark.parametrize("block_bytes", [8, 1 << 20])
def test_include_reads_some_columns_and_lines_give_whole_rows(block_bytes):
    data = "\ufeffh1,h2,h3\n1,2,3\r\n#c,x,y\n4,5\n\n7,\u00e9,9\n, ,\t\n10,11,12".encode()
    rows, rejects = [], []
    for batch in read_delimited(
        io.BytesIO(data), "in.csv", delimiter=",", columns=COLS, skip_lines=0, block_bytes=block_bytes,
        include=["c", "b"],
    ):
        assert batch.fields.columns == ["b", "c", "source_row"]  # file order; "a" read only to tell comments
        rows += batch.fields.rows()
        rejects += batch.rejects["source_row"].to_list()
        every = batch.fields.select(pl.col("source_row").cast(pl.UInt64))
        lines = attach_lines(
            every.select(pl.lit("in.csv").alias("source_file"), "source_row", pl.lit("r").alias("reason"),
                         pl.lit(None, pl.String).alias("raw")),
            batch.lines,
        )
        # The whole row as its fields joined: line end and the BOM Arrow drops at a block start left out.
        for row, raw in lines.select("source_row", "raw").rows():
            want = data.split(b"\n")[row - 1].decode().removesuffix("\r")
            assert raw == (want.removeprefix("\ufeff") if row == 1 else want)
        assert batch.lines.blank(batch.fields["source_row"], ",").to_list() == [
            r == 7 for r in batch.fields["source_row"].to_list()
        ]
    assert rows == [("h2", "h3", 1), ("2", "3", 2), ("\u00e9", "9", 6), (" ", "\t", 7), ("11", "12", 8)]
    assert rejects == [4]


def test_include_must_name_columns():
    with pytest.raises(ValueError, match="zz"):
        list(read_delimited(io.BytesIO(b"1,2,3\n"), "in.csv", delimiter=",", columns=COLS, skip_lines=0, include=["zz"]))


@pytest.mark.parametrize(
    "block,bad",
    [(b"a,b\r\nc\n", False), (b"a\rb\n", True), (b"a,b\r", False), (b"\xc3\xa9\n", False), (b"\xff\n", True),
     (b"\xc3\xa9\r\n\r", False), (b"\xc3\xa9\rx\n", True), (b"", False)],
)
def test_has_bad_bytes(block, bad):
    assert _has_bad_bytes(block) is bad
