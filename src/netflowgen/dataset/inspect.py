"""Inspect: what is in a flow input or an ingested dataset.

Statistics are gathered batch by batch, so inspecting a file larger than memory works; only the
per-address totals (for top talkers) grow with the number of distinct addresses.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from netflowgen.artifacts import MANIFEST_NAME
from netflowgen.dataset.coverage import CoverageBuilder, dataset_coverage
from netflowgen.dataset.layout import REJECTS_NAME, part_files
from netflowgen.dataset.manifest import is_dataset
from netflowgen.read import ReadOptions, iter_checked
from netflowgen.read.validate import reason_kind
from netflowgen.schema import COLUMN_DOCS, FLOW_SCHEMA, Quality

__all__ = ["Inspection", "inspect_path"]

_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 47: "GRE", 50: "ESP", 132: "SCTP"}


@dataclass
class Inspection:
    """A summary of flows: what ``netflowgen inspect`` prints."""

    path: str
    kind: str
    formats: dict[str, int] = field(default_factory=dict)
    flows: int = 0
    filter: str | None = None
    """The filter the flows were selected with (``flows`` counts the kept ones)."""
    flows_before_filter: int | None = None
    """Flows before the filter (None without a filter)."""
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    packets: int = 0
    bytes: int = 0
    first_start: str | None = None
    last_end: str | None = None
    protocols: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    label_details: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)
    top_sources: list[dict[str, object]] = field(default_factory=list)
    top_destinations: list[dict[str, object]] = field(default_factory=list)
    coverage: dict[str, object] = field(default_factory=dict)
    """What the inputs observed: rule, intervals, observed seconds, span, largest holes."""
    columns: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return asdict(self)


class _Stats:
    def __init__(self, top: int) -> None:
        self.top = top
        self.flows = 0
        self.packets = 0
        self.bytes = 0
        self.first = None
        self.last = None
        self.protocols: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()
        self.details: Counter[str] = Counter()
        self.quality: Counter[str] = Counter()
        self.talkers: dict[str, pl.DataFrame] = {}

    def update(self, flows: pl.DataFrame) -> None:
        if flows.height == 0:
            return
        self.flows += flows.height
        p, b, lo, hi = flows.select(
            pl.col("fwd_packets").sum() + pl.col("rev_packets").sum(),
            pl.col("fwd_bytes").sum() + pl.col("rev_bytes").sum(),
            pl.col("ts_start").min(),
            pl.col("ts_end").max(),
        ).row(0)
        self.packets += int(p)
        self.bytes += int(b)
        self.first = lo if self.first is None or lo < self.first else self.first
        self.last = hi if self.last is None or hi > self.last else self.last
        for proto, n in flows.group_by("proto").len().iter_rows():
            self.protocols[_PROTO_NAMES.get(proto, str(proto))] += n
        for col, counter in (("label", self.labels), ("label_detail", self.details)):
            for value, n in flows.group_by(col).len().iter_rows():
                counter["(none)" if value is None else value] += n
        for flag in Quality:
            n = flows.filter((pl.col("quality") & int(flag)) != 0).height
            if n:
                self.quality[flag.name or str(int(flag))] += n
        for side in ("src_ip", "dst_ip"):
            batch = flows.group_by(side).agg(
                pl.len().alias("flows"),
                (pl.col("fwd_packets") + pl.col("rev_packets")).sum().alias("packets"),
                (pl.col("fwd_bytes") + pl.col("rev_bytes")).sum().alias("bytes"),
            ).rename({side: "ip"})
            if side in self.talkers:
                batch = pl.concat([self.talkers[side], batch]).group_by("ip").agg(pl.all().sum())
            self.talkers[side] = batch

    def finish(self, into: Inspection) -> None:
        into.flows = self.flows
        into.packets = self.packets
        into.bytes = self.bytes
        into.first_start = self.first.isoformat() if self.first else None  # type: ignore[attr-defined]
        into.last_end = self.last.isoformat() if self.last else None  # type: ignore[attr-defined]
        into.protocols = dict(self.protocols.most_common())
        into.labels = dict(self.labels.most_common())
        into.label_details = dict(self.details.most_common())
        into.quality = dict(sorted(self.quality.items()))
        for side, target in (("src_ip", into.top_sources), ("dst_ip", into.top_destinations)):
            if side in self.talkers:
                top = self.talkers[side].sort(["flows", "bytes", "ip"], descending=[True, True, False]).head(self.top)
                target.extend(top.to_dicts())


def _dataset_batches(path: Path) -> Iterator[pl.DataFrame]:
    for part in part_files(path):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=1 << 18):
            yield pl.from_arrow(batch)  # type: ignore[misc]


def inspect_path(path: str | os.PathLike[str], options: ReadOptions | None = None, top: int = 10) -> Inspection:
    """Summarise an ingested dataset, or any supported input read on the fly."""
    p = Path(path)
    options = options or ReadOptions()
    stats = _Stats(top)
    before = 0
    columns = {name: f"{dtype}: {COLUMN_DOCS[name]}" for name, dtype in FLOW_SCHEMA.items()}
    if is_dataset(p):
        result = Inspection(str(p), "dataset", columns=columns)
        manifest = json.loads((p / MANIFEST_NAME).read_text())
        for entry in manifest.get("summary", {}).get("inputs", []):
            result.formats[entry["format"]] = result.formats.get(entry["format"], 0) + 1
        for batch in _dataset_batches(p):
            before += batch.height
            stats.update(options.select(batch))
        result.coverage = dataset_coverage(p).to_dict()
        rejects = pl.read_csv(p / REJECTS_NAME, schema_overrides={"raw": pl.String, "reason": pl.String})
        result.rejected = rejects.height
        result.rejects_by_reason = dict(Counter(reason_kind(r) for r in rejects["reason"].to_list()).most_common())
    else:
        result = Inspection(str(p), "input", columns=columns)
        reasons: Counter[str] = Counter()
        formats: Counter[str] = Counter()
        seen: set[str] = set()
        coverage = CoverageBuilder()
        for source, fmt, checked in iter_checked(p, options):
            if source.name not in seen:
                seen.add(source.name)
                formats[fmt.name] += 1
            before += checked.flows.height
            stats.update(options.select(checked.flows))
            coverage.add(checked.flows)
            result.rejected += checked.rejects.height
            reasons.update(reason_kind(r) for r in checked.rejects["reason"].to_list())
        result.formats = dict(formats)
        result.coverage = coverage.finish().to_dict()
        result.rejects_by_reason = dict(reasons.most_common())
    stats.finish(result)
    if options.filter is not None:
        result.filter, result.flows_before_filter = options.filter, before
    return result
