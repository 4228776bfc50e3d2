"""The delimited-text engine every text format shares.

It reads a source in blocks of whole lines, so that every row keeps its exact line number, and
parses each block with Arrow's CSV parser into String columns. Rows it cannot split into the
expected number of fields, and lines that are not valid UTF-8, become rejects with their line
number and text; blank lines and comment lines (``#`` by default) are skipped, as they hold no data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from netflowgen.read.validate import REJECT_SCHEMA, Checked, check

__all__ = [
    "TextBatch",
    "Lines",
    "read_delimited",
    "unique_names",
    "iter_line_blocks",
    "attach_raw",
    "attach_lines",
    "DEFAULT_BLOCK_BYTES",
]

DEFAULT_BLOCK_BYTES = 8 << 20
_RAW_CHARS = 500
_BOM = "\ufeff".encode()


class Lines:
    """The text of the lines of one block, by line number (without the line end)."""

    def __init__(self, block: bytes, first_line: int, starts: np.ndarray, ends: np.ndarray) -> None:
        self._block = block
        self._first_line = first_line
        self._starts = starts
        self._ends = ends

    def text(self, rows: pl.Series) -> pl.Series:
        """The lines ``rows`` (line numbers in this block) as the fields of their row joined."""
        out = []
        for row in rows.to_list():
            i = row - self._first_line
            end = self._ends[i]
            if end > self._starts[i] and self._block[end - 1] == 13:  # CRLF: Arrow ends the row at the CR
                end -= 1
            line = self._block[self._starts[i] : end].decode("utf-8")
            # Arrow drops a byte order mark at the start of what it parses: the block.
            out.append(line.removeprefix("\ufeff") if i == 0 else line)
        return pl.Series("line", out, pl.String)

    def blank(self, rows: pl.Series, delimiter: str) -> pl.Series:
        """For each of the lines ``rows``: True where every field is blank (whitespace)."""
        text = self.text(rows)
        return text.str.replace_all(delimiter, "", literal=True).str.strip_chars() == ""


@dataclass(frozen=True)
class TextBatch:
    """One block of rows: String fields named by the format, plus ``source_row`` (the line number)."""

    fields: pl.DataFrame
    rejects: pl.DataFrame
    lines: Lines
    """The text of the block's lines: the raw text of rejects when some columns were not read."""


def iter_line_blocks(stream: io.RawIOBase | io.BufferedIOBase, block_bytes: int) -> Iterator[bytes]:
    """Yield chunks of the stream that end at a line boundary (the last may lack a newline)."""
    rest = b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]
    if rest:
        yield rest


def _has_bad_bytes(block: bytes) -> bool:
    """Whether a block holds invalid UTF-8 or a carriage return that does not end a line."""
    if not block.isascii():  # ASCII is UTF-8, and far cheaper to check
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return True
    crs = block.count(b"\r")
    return crs > 0 and crs - block.count(b"\r\n") - block.endswith(b"\r") > 0


def _set_aside_bad_lines(block: bytes, first_line: int) -> tuple[bytes, list[tuple[int, str, str]]]:
    """Blank out lines that are not valid UTF-8 or hold a stray carriage return, and report
    them. Arrow's parser would end a row at a lone CR and lose the line numbering. Fast when all
    is well."""
    if not _has_bad_bytes(block):
        return block, []
    lines = block.split(b"\n")
    problems = []
    for i, line in enumerate(lines):
        body = line[:-1] if line.endswith(b"\r") else line
        reason = None
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"invalid UTF-8 at byte {e.start} of the line"
        if reason is None and b"\r" in body:
            reason = "carriage return inside the line at byte " + str(body.find(b"\r"))
        if reason is not None:
            problems.append((first_line + i, reason, line.decode("utf-8", "replace")[:_RAW_CHARS]))
            lines[i] = b""
    return b"\n".join(lines), problems


def _line_bounds(block: bytes, n_lines: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (the newline, excluded) of each line of the block."""
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    starts = np.concatenate(([0], newlines + 1))[:n_lines]
    ends = np.concatenate((newlines, [len(block)]))[:n_lines]
    return starts, ends


def _blank_lines(block: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each line of the block: True where it is empty (CRLF endings allowed)."""
    data = np.frombuffer(block, dtype=np.uint8)
    length = ends - starts
    if len(data) == 0:
        return length == 0
    ends_with_cr = (length > 0) & (data[np.maximum(ends - 1, 0)] == 13)
    return (length - ends_with_cr) == 0


def unique_names(columns: list[str]) -> list[str]:
    """Column names made unique: a repeated name gets a ``__2``, ``__3`` suffix (the first
    occurrence keeps its name, so readers that look columns up by name use the first).

    >>> unique_names(["ts", "sa", "ts", "ts"])
    ['ts', 'sa', 'ts__2', 'ts__3']
    """
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        candidate = name if seen[name] == 1 else f"{name}__{seen[name]}"
        while candidate in seen and candidate != name:
            seen[name] += 1
            candidate = f"{name}__{seen[name]}"
        out.append(candidate)
    return out


def read_delimited(
    stream: BinaryIO,
    name: str,
    *,
    delimiter: str,
    columns: list[str],
    skip_lines: int,
    comment_prefix: str | None = "#",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    include: Sequence[str] | None = None,
) -> Iterator[TextBatch]:
    """Stream delimited text (``name`` is the file shown in rejects) as String columns with
    line numbers.

    ``skip_lines`` lines (the header the format reader already understood) are skipped;
    line numbers are 1-based and count every line of the file. ``include`` names the columns
    to read (``columns`` after :func:`unique_names`; default all): converting the others to
    text is most of the engine's work. Every row still needs all ``columns``; the batch's
    ``lines`` give the whole text of any row (:func:`attach_lines`).
    """
    columns = unique_names(columns)
    n_cols = len(columns)
    if include is not None:
        unknown = set(include) - set(columns)
        if unknown:
            raise ValueError(f"include names columns that are not in columns: {', '.join(sorted(unknown))}")
    line_no = 1  # number of the first line of the current block
    for block in iter_line_blocks(stream, block_bytes):
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        if skip_lines > 0:
            take = min(skip_lines, n_lines)
            pos = 0
            for _ in range(take):
                nl = block.find(b"\n", pos)
                pos = len(block) if nl < 0 else nl + 1
            block = block[pos:]
            skip_lines -= take
            line_no += take
            n_lines -= take
            if not block:
                continue
        yield _parse_block(block, line_no, n_lines, name, delimiter, columns, n_cols, comment_prefix, include)
        line_no += n_lines


def _parse_block(
    block: bytes,
    first_line: int,
    n_lines: int,
    source_name: str,
    delimiter: str,
    columns: list[str],
    n_cols: int,
    comment_prefix: str | None,
    include: Sequence[str] | None,
) -> TextBatch:
    block, rejects = _set_aside_bad_lines(block, first_line)
    if first_line > 1 and block.startswith(_BOM):
        # Arrow drops a byte order mark at the start of what it parses, and a block can start at
        # any line: "\ufeff#types" after a Zeek header became a comment, skipped and counted
        # nowhere (found by benchmarks/fuzz.py). Only the file's first line may carry the mark;
        # elsewhere the line is set aside, as it is inside a block (its first field is then not
        # what the format expects).
        end = block.find(b"\n")
        end = len(block) if end < 0 else end
        rejects.append((first_line, "byte order mark (U+FEFF) at the start of a line other than the file's first",
                        block[:end].decode("utf-8", "replace")[:_RAW_CHARS]))
        block = block[end:]  # the line, now empty, keeps its number
    wanted = set(columns if include is None else include)
    if comment_prefix:
        wanted.add(columns[0])  # to tell comment lines
    read = [c for c in columns if c in wanted]
    not_rows: list[int] = []  # lines Arrow's parser did not turn into a row

    def on_invalid(row: pacsv.InvalidRow) -> str:
        line = first_line + row.number - 1
        not_rows.append(line)
        text = row.text
        # A line of spaces holds nothing; one of delimiters (a million tabs) is a row with the
        # wrong number of fields, and is rejected like any other.
        if (text.strip() == "" and delimiter not in text) or (comment_prefix and text.startswith(comment_prefix)):
            return "skip"
        rejects.append((line, f"expected {row.expected_columns} fields, found {row.actual_columns}", text[:_RAW_CHARS]))
        return "skip"

    all_lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
    starts, ends = _line_bounds(block, n_lines)
    blank = _blank_lines(block, starts, ends)
    try:
        table = pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(column_names=columns, use_threads=False, block_size=max(1 << 20, len(block) + 1)),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=False, double_quote=False, escape_char=False,
                newlines_in_values=False, ignore_empty_lines=False, invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in read}, include_columns=read, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as e:
        # Nothing in a block may stop the run: set the whole block aside with the reason.
        table = pa.table({c: pa.array([], pa.string()) for c in read})
        done = {line for line, _, _ in rejects}
        rejects += [(int(line), f"unparsable text block: {e}", "") for line in all_lines[~blank] if line not in done]
        not_rows = all_lines.tolist()

    # Empty lines (and the lines blanked above) come out of Arrow as rows of empty fields.
    row_lines = np.setdiff1d(all_lines, np.asarray(not_rows, dtype=np.int64))
    fields = pl.from_arrow(table)
    assert isinstance(fields, pl.DataFrame)
    if len(row_lines) != fields.height:  # pragma: no cover - would be an engine bug
        raise RuntimeError(f"{source_name}: line bookkeeping failed near line {first_line}")
    fields = fields.with_columns(pl.Series("source_row", row_lines))
    keep = pl.Series(~blank[row_lines - first_line])
    if comment_prefix:
        # A comment line that happens to hold the expected number of fields.
        keep = keep & ~fields[columns[0]].str.starts_with(comment_prefix)
    fields = fields.filter(keep)
    if include is not None and columns[0] not in include:
        fields = fields.drop(columns[0], strict=False)
    rejects.sort()
    reject_df = pl.DataFrame(
        {
            "source_file": [source_name] * len(rejects),
            "source_row": [r[0] for r in rejects],
            "reason": [r[1] for r in rejects],
            "raw": [r[2] for r in rejects],
        },
        schema=REJECT_SCHEMA,
    )
    return TextBatch(fields, reject_df, Lines(block, first_line, starts, ends))


def attach_lines(rejects: pl.DataFrame, lines: Lines) -> pl.DataFrame:
    """Fill the ``raw`` text of validation rejects with the text of their lines."""
    if rejects.height == 0:
        return rejects
    text = lines.text(rejects["source_row"]).str.slice(0, _RAW_CHARS)
    return rejects.with_columns(pl.coalesce(pl.col("raw"), text).alias("raw"))


def attach_raw(rejects: pl.DataFrame, fields: pl.DataFrame, delimiter: str) -> pl.DataFrame:
    """Fill the ``raw`` text of validation rejects from the fields of their rows."""
    if rejects.height == 0:
        return rejects
    cols = [c for c in fields.columns if c != "source_row"]
    raw = fields.join(rejects.select("source_row"), on="source_row", how="semi").select(
        pl.col("source_row").cast(pl.UInt64),
        pl.concat_str([pl.col(c).fill_null("") for c in cols], separator=delimiter).str.slice(0, _RAW_CHARS).alias("raw_text"),
    )
    return (
        rejects.join(raw, on="source_row", how="left")
        .with_columns(pl.coalesce("raw", "raw_text").alias("raw"))
        .select(list(REJECT_SCHEMA))
    )


def check_batch(candidates: pl.DataFrame, batch: TextBatch, source_name: str) -> Checked:
    """Validate a text batch's candidate rows: its flows, and every reject of the batch (the
    engine's and validation's) with the full line it came from."""
    checked = check(candidates, source_name)
    rejects = pl.concat([batch.rejects, attach_lines(checked.rejects, batch.lines)], how="vertical")
    return Checked(checked.flows, rejects)
