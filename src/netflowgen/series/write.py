"""Node series on disk: ``SERIES/part-NNNNN.parquet`` (each the complete series of a set of
nodes, sorted by node and step) plus the manifest ``netflowgen.json``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import polars as pl

from netflowgen.artifacts import atomic_directory, read_manifest, write_manifest, writing
from netflowgen.dataset.coverage import Coverage
from netflowgen.series.spec import SeriesSpec
from netflowgen.series.features import FEATURES

__all__ = ["SERIES_KIND", "merge_summaries", "part_name", "write_part", "write_series_manifest", "series_spec", "series_part_files", "write_series", "write_series_parts", "read_series", "scan_series", "series_summary"]

SERIES_KIND = "netflowgen.series"


def series_summary(series: pl.DataFrame) -> dict[str, object]:
    """Counts that describe a series table (also what `netflowgen series --json` prints)."""
    if series.height == 0:
        return {"rows": 0, "nodes": 0, "groups": 0, "first_step": None, "last_step": None,
                "active_steps": 0, "attack_steps": 0, "attack_nodes": 0, "classes": {}}
    active = series.filter(pl.sum_horizontal("flows_in", "flows_out") > 0).height
    classes = series.select(pl.col("classes").explode().drop_nulls().value_counts(sort=True)).unnest("classes")
    return {
        "rows": series.height,
        "nodes": series["node"].n_unique(),
        "groups": series["group"].n_unique(),
        "first_step": series["step"].min(),
        "last_step": series["step"].max(),
        "active_steps": active,
        "attack_steps": int(series["attack"].sum()),
        "attack_nodes": series.filter(pl.col("attack"))["node"].n_unique(),
        "classes": {str(row[0]): int(row[1]) for row in classes.iter_rows()},
    }


def merge_summaries(total: dict, part: dict) -> dict:  # type: ignore[type-arg]
    """Summaries of parts with disjoint nodes, merged."""
    if not total:
        return dict(part, classes=dict(part["classes"]))
    if part["rows"] == 0:
        return total
    if total["rows"] == 0:
        return dict(part, classes=dict(part["classes"]))
    merged = {k: total[k] + part[k] for k in ("rows", "nodes", "active_steps", "attack_steps", "attack_nodes")}
    merged["groups"] = None  # recounted at the end from the group sets
    merged["first_step"] = min(total["first_step"], part["first_step"])
    merged["last_step"] = max(total["last_step"], part["last_step"])
    classes = dict(total["classes"])
    for k, v in part["classes"].items():
        classes[k] = classes.get(k, 0) + v
    merged["classes"] = dict(sorted(classes.items(), key=lambda kv: -kv[1]))
    return merged


def series_spec(manifest: dict) -> SeriesSpec:  # type: ignore[type-arg]
    """The contract a series artifact was built by, from its manifest (its ``config``)."""
    return SeriesSpec.from_dict(manifest["config"])


def write_series_parts(parts: Iterable[pl.DataFrame], out: Path, config: SeriesSpec, inputs: list[str],
                       overwrite: bool = False, coverage: Coverage | None = None) -> dict[str, object]:
    """Write a series artifact atomically from parts with disjoint nodes; returns its summary.
    ``coverage``: what the flows observed, recorded in the manifest (None: not known)."""
    summary: dict = {}  # type: ignore[type-arg]
    groups: set[str] = set()
    try:
        with atomic_directory(out, overwrite) as tmp:
            n = 0
            for part in parts:
                missing = [f for f in config.features if f not in part.columns]
                if missing:
                    raise ValueError(f"the series lacks the features {', '.join(missing)} its spec names")
                write_part(part, tmp / part_name(n))
                summary = merge_summaries(summary, series_summary(part))
                groups.update(part["group"].unique().drop_nulls().to_list())
                n += 1
            write_series_manifest(tmp, summary, groups, n, config, inputs, coverage)
    finally:
        # A generator of parts (iter_series_parts) removes its node view folder when closed: now,
        # on an error too, not whenever the traceback holding it is collected (or never: an
        # interrupt ends the process with os._exit).
        close = getattr(parts, "close", None)
        if close is not None:
            close()
    return summary


def series_part_files(folder: Path) -> list[Path]:
    """The part files of a series artifact, in order."""
    return sorted(Path(folder).glob("part-*.parquet"))


def part_name(n: int) -> str:
    """The file name of part ``n`` of a series artifact."""
    return f"part-{n:05d}.parquet"


def write_part(part: pl.DataFrame, path: Path | BinaryIO) -> None:
    """One part file of a series artifact (both engines write their parts through this)."""
    with writing(path if isinstance(path, Path) else "a series part"):
        part.write_parquet(path, compression="zstd", statistics=True, row_group_size=1 << 18)


def write_series_manifest(tmp: Path, summary: dict, groups: set[str], parts: int, config: SeriesSpec,  # type: ignore[type-arg]
                          inputs: list[str], coverage: Coverage | None) -> None:
    """The manifest of a series artifact whose ``parts`` part files are written: ``summary`` is
    the merge of the parts' summaries (in part order), ``groups`` the union of their groups."""
    summary["groups"] = len(groups)
    summary["parts"] = parts
    if coverage is not None:
        summary["observed_seconds"] = round(coverage.seconds, 3)
    write_manifest(tmp, SERIES_KIND, config=config.to_dict(), features={f.name: f.doc for f in FEATURES if f.name in config.features}, inputs=inputs,
                   summary=summary, coverage=coverage.to_dict() if coverage is not None else None)


def write_series(series: pl.DataFrame, out: Path, config: SeriesSpec, inputs: list[str], overwrite: bool = False,
                 coverage: Coverage | None = None) -> dict[str, object]:
    """Write one in-memory series table as a series artifact; returns its summary."""
    return write_series_parts([series], out, config, inputs, overwrite, coverage)


def scan_series(path: str | os.PathLike[str]) -> tuple[pl.LazyFrame, dict]:  # type: ignore[type-arg]
    """A series artifact as a LazyFrame (sorted by node and step within each part) and its manifest."""
    folder = Path(path)
    manifest = read_manifest(folder, SERIES_KIND)
    parts = series_part_files(folder)
    if not parts:
        raise ValueError(f"{folder}: a series without part files (written by an older netflowgen?); build it again")
    return pl.scan_parquet(parts), manifest


def read_series(path: str | os.PathLike[str]) -> tuple[pl.DataFrame, dict]:  # type: ignore[type-arg]
    """A series artifact's table (in memory) and manifest."""
    lazy, manifest = scan_series(path)
    return lazy.collect(), manifest
