"""Token shards: the compact, memory-mappable arrays that training reads.

A tokens directory::

    TOKENS/netflowgen.json        kind netflowgen.tokens: features, bins, fit part, shard list
    TOKENS/tokenizer.json         the fitted tokenizer (see tokenizer.py)
    TOKENS/shard-00000/
        traffic.npy   (rows, features) uint8   bin of every token feature (the tokenizer's
                                               ``features``: traffic, then relative tokens)
        time.npy      (rows, 4) uint8          day of week, day of month, hour, minute
        node.npy      (rows,) int32            node id (0 = unknown to the tokenizer)
        group.npy     (rows,) int32            group id (0 = unknown)
        step.npy      (rows,) int64            step start, Unix seconds
        attack.npy    (rows,) uint8            1 where the step is positive for the attack classes
        labeled.npy   (rows,) uint8            1 where the step has labelled flows
        segments.npy  (n, 2) int64             [first row, length] of each run of consecutive
                                               steps of one node: windows never cross a segment

Every ``.npy`` opens with ``numpy.load(path, mmap_mode="r")``. Rows are ordered by node, then
step; a node's segments never cross a shard.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from netflowgen.artifacts import atomic_directory, loading, read_manifest, write_manifest, writing
from netflowgen.series.spec import segment_bounds
from netflowgen.tokenize.tokenizer import TIME_FIELDS, Tokenizer

__all__ = ["TOKENS_KIND", "TokenShard", "write_tokens", "open_tokens", "segments_of"]

TOKENS_KIND = "netflowgen.tokens"
_ARRAYS = ("traffic", "time", "node", "group", "step", "attack", "labeled", "segments")


@dataclass(frozen=True)
class TokenShard:
    """One shard's arrays (memory-mapped when opened with :func:`open_tokens`)."""

    traffic: np.ndarray
    time: np.ndarray
    node: np.ndarray
    group: np.ndarray
    step: np.ndarray
    attack: np.ndarray
    labeled: np.ndarray
    segments: np.ndarray


def segments_of(node: np.ndarray, step_s: np.ndarray, step_width_s: float) -> np.ndarray:
    """[first row, length] of each run of consecutive steps of one node (rows sorted by node, step).

    >>> segments_of(np.array([1, 1, 1, 2]), np.array([0, 60, 180, 0]), 60).tolist()
    [[0, 2], [2, 1], [3, 1]]
    """
    bounds = segment_bounds(node, step_s, step_width_s)  # the contract's rule; shards store lengths
    return np.stack([bounds[:, 0], bounds[:, 1] - bounds[:, 0]], axis=1).astype(np.int64)


def _node_cuts(node_keys: np.ndarray, shard_rows: int) -> list[tuple[int, int]]:
    """Row ranges of at most ~shard_rows rows that never split a node."""
    change = np.flatnonzero(np.diff(node_keys) != 0) + 1
    starts = np.concatenate(([0], change, [len(node_keys)]))
    cuts, begin = [], 0
    for s in starts[1:]:
        if s - begin >= shard_rows or s == len(node_keys):
            cuts.append((begin, int(s)))
            begin = int(s)
    return [c for c in cuts if c[1] > c[0]]


def write_tokens(
    series: pl.DataFrame | Iterable[pl.DataFrame],
    tokenizer: Tokenizer,
    out: Path,
    *,
    fit: dict | None,  # type: ignore[type-arg]
    source: str,
    shard_rows: int = 4_000_000,
    overwrite: bool = False,
) -> dict[str, object]:
    """Encode a node-series table, or parts of one with disjoint nodes (as a series artifact
    stores them, so that only one part is in memory at a time), and write token shards; returns
    the manifest. The step width is the tokenizer's series contract (``Tokenizer.spec``)."""
    step_seconds = tokenizer.spec.step_seconds
    tables = [series] if isinstance(series, pl.DataFrame) else series
    shards = []
    rows = 0
    with atomic_directory(out, overwrite) as tmp:
        tokenizer.save(tmp / "tokenizer.json")
        for table in tables:
            table = table.sort("node", "step")
            tokenizer.check(table, "the tokenizer")
            rows += table.height
            shards += _write_shards(table, tokenizer, tmp, len(shards), step_seconds, shard_rows)
        manifest = {
            "features": list(tokenizer.features),  # token features: traffic.npy's columns
            "bins": tokenizer.bins,
            "time_fields": TIME_FIELDS,
            "fit": fit,
            "source_series": source,
            "rows": rows,
            "nodes_known": len(tokenizer.nodes),
            "groups_known": len(tokenizer.groups),
            "shards": shards,
        }
        write_manifest(tmp, TOKENS_KIND, **manifest)
    return manifest


def _write_shards(table: pl.DataFrame, tokenizer: Tokenizer, tmp: Path, first: int, step_seconds: float,
                  shard_rows: int) -> list[dict]:  # type: ignore[type-arg]
    # Node keys in row order: unknown nodes all have id 0, so split shards on the node text.
    keys = table["node"].rank("dense").to_numpy()
    shards = []
    for i, (lo, hi) in enumerate(_node_cuts(keys, shard_rows) if table.height else [], start=first):
        part = table.slice(lo, hi - lo)
        enc = tokenizer.encode(part)
        step_s = part["step"].dt.epoch("s").to_numpy().astype(np.int64)
        arrays = {
            **enc,
            "step": step_s,
            "attack": part["attack"].cast(pl.UInt8).to_numpy(),
            "labeled": (part["labeled_flows"] > 0).cast(pl.UInt8).to_numpy(),
            "segments": segments_of(keys[lo:hi], step_s, step_seconds),
        }
        folder = tmp / f"shard-{i:05d}"
        folder.mkdir()
        for name in _ARRAYS:
            with writing(folder / f"{name}.npy"):
                np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name]), allow_pickle=False)
        shards.append({"name": folder.name, "rows": hi - lo, "segments": int(len(arrays["segments"]))})
    return shards


def open_tokens(path: str | os.PathLike[str]) -> tuple[dict, Tokenizer, list[TokenShard]]:  # type: ignore[type-arg]
    """A tokens directory: its manifest, tokenizer and memory-mapped shards."""
    folder = Path(path)
    manifest = read_manifest(folder, TOKENS_KIND)
    tokenizer = Tokenizer.load(folder / "tokenizer.json")
    tokenizer.adopt_step(manifest.get("step_seconds"))  # tokens written before the tokenizer held the contract
    with loading(folder, "the token shards (plain arrays only: an object array is refused, never unpickled)"):
        shards = [
            TokenShard(**{n: np.load(folder / s["name"] / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in _ARRAYS})
            for s in manifest["shards"]
        ]
    return manifest, tokenizer, shards
