"""What a flow format is: how to recognise it and how to read it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from netflowgen.read.filter import Frame, compile_filter
from netflowgen.read.source import Source
from netflowgen.read.validate import Checked

__all__ = ["ReadOptions", "FlowFormat", "FormatError", "check_unique_names"]


class FormatError(ValueError):
    """The input is not in the expected format, as a whole (not one bad row)."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read inputs. Every field has a default that suits files as tools write them."""

    format: str | None = None
    """Format name to use instead of detecting it from the content (see ``netflowgen formats``)."""
    mapping: Path | None = None
    """Column mapping file (TOML) for CSV layouts no built-in reader knows; implies format ``csv``."""
    block_bytes: int = 8 << 20
    """Bytes of text parsed at once: bounds memory per batch."""
    timezone: str = "UTC"
    """Time zone of local-time timestamps in formats that carry no zone (Argus, CICFlowMeter)."""
    filter: str | None = None
    """nfdump filter expression (``proto tcp and dst port 80``): only the flows it matches are read.

    Checked here, so that a bad expression fails before anything is read or written. It applies
    in :func:`netflowgen.read.read_flow_table`, :func:`netflowgen.dataset.ingest.scan_flows` and ingest;
    :func:`netflowgen.read.iter_checked` yields rows as read (see :mod:`netflowgen.read.filter`).
    """

    def __post_init__(self) -> None:
        if self.filter is not None:
            compile_filter(self.filter)

    def select(self, frame: Frame) -> Frame:
        """The flows of ``frame`` that :attr:`filter` matches (all of them without a filter)."""
        return frame if self.filter is None else compile_filter(self.filter).apply(frame)


@dataclass(frozen=True)
class FlowFormat:
    """A readable format.

    ``sniff`` gets the first decompressed bytes and the inner file name and says whether the
    content is this format; ``read`` streams a source as validated batches.
    """

    name: str
    description: str
    sniff: Callable[[bytes, str], bool]
    read: Callable[[Source, ReadOptions], Iterator[Checked]]
    extensions: tuple[str, ...] = field(default=())


def check_unique_names(source_name: str, names: list[str], what: str = "header") -> None:
    """A :class:`FormatError` when a header names a column more than once (a column cannot be
    mapped by a name that two hold).

    Counted in one pass: a damaged header line of up to 1 MiB holds some 10^6 names, and
    counting each one's occurrences took hours (benchmarks/fuzz.py found it as a hang).

    >>> check_unique_names("f.csv", ["a", "b", "a", "c", "b"])
    Traceback (most recent call last):
    ...
    netflowgen.read.base.FormatError: f.csv: the header names a, b more than once
    """
    duplicates = sorted(n for n, k in Counter(names).items() if k > 1)
    if duplicates:
        shown = ", ".join(duplicates[:10]) + (f", ... ({len(duplicates):,} names in all)" if len(duplicates) > 10 else "")
        raise FormatError(f"{source_name}: the {what} names {shown} more than once")
