"""What makes a directory a flow dataset: its manifest, and the one way to read it back.

Four writers make flow datasets (``ingest``, ``collect``, ``simulate``, ``inject``); each writes
its own story (inputs, collector state, simulation config, injections) into the manifest, and
this module writes the part they share: the kind, the schema and the layout. Everything that
reads flows goes through :func:`scan_flows`, which takes a dataset or any supported input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from netflowgen.artifacts import MANIFEST_NAME, recover, write_manifest
from netflowgen.dataset.layout import LAYOUT, part_files
from netflowgen.read import ReadOptions
from netflowgen.schema import FLOW_SCHEMA, SCHEMA_VERSION, empty_flows

__all__ = ["DATASET_KIND", "is_dataset", "scan_flows", "write_dataset_manifest"]

DATASET_KIND = "netflowgen.flows"


def write_dataset_manifest(folder: Path, *, layout_note: str | None = None, **fields: Any) -> None:
    """Write ``folder``'s manifest: kind, schema version, columns and layout (with
    ``layout_note`` after it, for what the writer adds beside the part files), then ``fields``."""
    write_manifest(
        folder,
        DATASET_KIND,
        schema_version=SCHEMA_VERSION,
        columns={name: str(dtype) for name, dtype in FLOW_SCHEMA.items()},
        layout=LAYOUT if layout_note is None else f"{LAYOUT}{layout_note}",
        **fields,
    )


def is_dataset(path: Path) -> bool:
    """Whether ``path`` is a flow dataset (as ``netflowgen ingest`` writes one)."""
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def scan_flows(path: str | os.PathLike[str], options: ReadOptions | None = None) -> pl.LazyFrame:
    """Canonical flows as a LazyFrame: scanned from a flow dataset (streams, any size), or
    read on the fly from any supported input (held in memory: ingest large inputs first).
    ``options.filter`` selects flows in both cases (inside the scan, for a dataset)."""
    from netflowgen.read import read_flow_table

    p = Path(path)
    if not p.exists():
        recover(p)  # a killed `ingest --overwrite` may have left the complete dataset aside
    if is_dataset(p):
        parts = part_files(p)
        if not parts:
            return empty_flows().lazy()
        return (options or ReadOptions()).select(pl.scan_parquet(parts))
    # Every option (format, mapping, time zone, block size, filter) applies, as in `ingest`.
    return read_flow_table(p, options or ReadOptions()).lazy()
