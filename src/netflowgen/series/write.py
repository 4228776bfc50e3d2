"""Node series on disk: ``SERIES/series.parquet`` plus its manifest."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import polars as pl

from netflowgen.artifacts import atomic_directory, read_manifest, write_manifest
from netflowgen.series.build import SeriesConfig
from netflowgen.series.features import FEATURES

__all__ = ["SERIES_KIND", "SERIES_FILE", "write_series", "read_series", "series_summary"]

SERIES_KIND = "netflowgen.series"
SERIES_FILE = "series.parquet"


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


def write_series(series: pl.DataFrame, out: Path, config: SeriesConfig, inputs: list[str], overwrite: bool = False) -> dict[str, object]:
    """Write a series artifact atomically; returns its summary."""
    summary = series_summary(series)
    with atomic_directory(out, overwrite) as tmp:
        series.write_parquet(tmp / SERIES_FILE, compression="zstd", statistics=True, row_group_size=1 << 18)
        cfg = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(config).items()}
        cfg["step_seconds"] = config.step.total_seconds()
        cfg.pop("step")
        write_manifest(
            tmp,
            SERIES_KIND,
            config=cfg,
            features={f.name: f.doc for f in FEATURES},
            inputs=inputs,
            summary=summary,
        )
    return summary


def read_series(path: str | os.PathLike[str]) -> tuple[pl.DataFrame, dict]:  # type: ignore[type-arg]
    """A series artifact's table and manifest."""
    folder = Path(path)
    manifest = read_manifest(folder, SERIES_KIND)
    return pl.read_parquet(folder / SERIES_FILE), manifest
