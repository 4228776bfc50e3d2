"""The flow dataset's layout on disk, spelled once:

    DATASET/date=YYYY-MM-DD/part-NNNNN.parquet   canonical flows, by the UTC day of ts_start
    DATASET/rejects.csv                          rows set aside, with file, row and reason
    DATASET/netflowgen.json                      the manifest (schema, inputs, counts, coverage)

Every writer of flow datasets (``ingest``, ``collect``, ``simulate``, ``inject``) names its
files through :func:`partition`, :func:`part_path` and :class:`PartitionWriter`, and every reader
finds them with :func:`part_files`.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from netflowgen.artifacts import writing
from netflowgen.schema import arrow_schema

__all__ = ["LAYOUT", "PART_GLOB", "REJECTS_NAME", "PartitionWriter", "day_of", "part_files", "part_location", "part_path",
           "partition"]

REJECTS_NAME = "rejects.csv"
#: The part files of a dataset, relative to its folder.
PART_GLOB = "date=*/*.parquet"
#: The layout in words, as manifests record it.
LAYOUT = f"date=YYYY-MM-DD/part-NNNNN.parquet, by UTC day of ts_start; rejects in {REJECTS_NAME}"
#: Part files a writer keeps open at once (a day's file is reopened as a new part after that).
MAX_OPEN_PARTITIONS = 32


def partition(day: str) -> str:
    """The folder name of a day's partition.

    >>> partition("2018-12-21")
    'date=2018-12-21'
    """
    return f"date={day}"


def part_path(root: Path, day: str, n: int) -> Path:
    """Part ``n`` of ``day`` under the dataset folder ``root``.

    >>> part_path(Path("ds"), "2018-12-21", 3).as_posix()
    'ds/date=2018-12-21/part-00003.parquet'
    """
    return root / partition(day) / f"part-{n:05d}.parquet"


_PART = re.compile(r"^part-(\d+)\.parquet$")


def part_location(path: Path) -> tuple[str, int | None]:
    """The day and part number of a part file (None for a file named otherwise).

    >>> part_location(Path("ds/date=2018-12-21/part-00003.parquet"))
    ('2018-12-21', 3)
    """
    match = _PART.match(path.name)
    return path.parent.name.removeprefix("date="), int(match.group(1)) if match else None


def part_files(root: Path) -> list[Path]:
    """Every part file of the dataset at ``root``, in day then part order."""
    return sorted(Path(root).glob(PART_GLOB))


def day_of(column: str = "ts_start") -> pl.Expr:
    """The partition day of each flow (UTC), as the column ``_day``."""
    return pl.col(column).dt.strftime("%Y-%m-%d").alias("_day")


class PartitionWriter:
    """Parquet part files per day under ``root``, a bounded number open at once."""

    def __init__(self, root: Path, first_part: int = 0) -> None:
        self.root = root
        self.open: OrderedDict[str, pq.ParquetWriter] = OrderedDict()
        self.parts: Counter[str] = Counter()
        self.first_part = first_part
        """Number of the first part written in each day (after parts already there)."""
        self.schema = arrow_schema()

    def write(self, flows: pl.DataFrame) -> None:
        if flows.height == 0:
            return
        days = flows.with_columns(day_of())
        for (day,), part in days.partition_by("_day", as_dict=True, maintain_order=True).items():
            writer = self._writer(str(day))
            with writing(writer.where):  # pyarrow's full-disk error names no file
                writer.write_table(part.drop("_day").to_arrow().cast(self.schema))

    def _writer(self, day: str) -> pq.ParquetWriter:
        if day in self.open:
            self.open.move_to_end(day)
            return self.open[day]
        if len(self.open) >= MAX_OPEN_PARTITIONS:
            _, oldest = self.open.popitem(last=False)
            oldest.close()
        path = part_path(self.root, day, self.first_part + self.parts[day])
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parts[day] += 1
        writer = pq.ParquetWriter(path, self.schema, compression="zstd", write_statistics=True)
        self.open[day] = writer
        return writer

    def close(self) -> list[str]:
        """Close every open file; the partitions written."""
        for writer in self.open.values():
            with writing(writer.where):
                writer.close()
        self.open.clear()
        return sorted(partition(d) for d in self.parts)
