"""Run a simulation: generate hour by hour, node block by node block, and write the dataset.

The output is a flow dataset exactly as ``netflowgen ingest`` writes one, plus the ground truth::

    OUT/
      date=2026-01-05/part-00000.parquet   canonical flows, by UTC day of ts_start
      rejects.csv                          empty (nothing is rejected), for tools that read it
      attacks.csv                          one row per attack or scan: victim, times, rate, flows
      nodes.csv                            one row per node: address, /24 group, role, mean rate
      netflowgen.json                      kind netflowgen.flows, "synthetic": true, the full config

Memory stays bounded: one chunk (an hour of ``nodes_per_chunk`` nodes, or an hour of one attack)
is generated while the previous one is written by a second thread. Chunks are written in a fixed
order, so the same config gives the same files, byte for byte.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from netflowgen.artifacts import Summary, atomic_directory
from netflowgen.dataset.coverage import Coverage
from netflowgen.dataset.layout import REJECTS_NAME, part_path, partition
from netflowgen.dataset.manifest import write_dataset_manifest
from netflowgen.read.validate import REJECT_SCHEMA
from netflowgen.schema import FLOW_SCHEMA
from netflowgen.simulate.attacks import AttackPlan, attack_records, plan_attacks
from netflowgen.simulate.benign import BenignModel, hour_of_week
from netflowgen.simulate.catalog import SCENARIOS, SERVICES
from netflowgen.simulate.config import SimConfig
from netflowgen.simulate.population import Population
from netflowgen.simulate.records import SCHEMA, Records, split_directions, to_table

__all__ = [
    "ATTACKS_NAME",
    "BENIGN_LABEL",
    "NODES_NAME",
    "Chunk",
    "SimSummary",
    "expected_flows",
    "iter_chunks",
    "scale_to_flows",
    "simulate",
]

ATTACKS_NAME = "attacks.csv"
NODES_NAME = "nodes.csv"
BENIGN_LABEL = "benign"
#: Rows per Parquet row group (chunks are buffered up to this before a write).
ROW_GROUP_ROWS = 1 << 20
_UNIQUE_ISH = ("ts_start", "ts_end", "fwd_bytes", "rev_bytes", "source_row")
#: How the flows are written: zstd with statistics, as ingest does; no dictionary for the
#: columns whose values hardly repeat (it would be dropped after the first page anyway), delta
#: encoding for the times and record numbers that rise within a chunk. Measured on 2M flows:
#: 10% smaller and about 10% faster to write than the defaults.
WRITER_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "write_statistics": True,
    "use_dictionary": [c for c in FLOW_SCHEMA if c not in _UNIQUE_ISH],
    "column_encoding": dict.fromkeys(("ts_start", "ts_end", "source_row"), "DELTA_BINARY_PACKED"),
}
_HOUR_US = 3600 * 1_000_000


@dataclass(frozen=True)
class Chunk:
    """One generated piece of the output: flows of one UTC hour, benign or of one attack."""

    day: str
    """YYYY-MM-DD of the hour: the partition the flows go to."""
    label: str
    detail: str | None
    attack_id: int | None
    table: pa.Table
    """Canonical flows (``netflowgen.schema.arrow_schema``)."""
    packets: int
    bytes: int
    first_us: int
    last_us: int


def iter_chunks(config: SimConfig, population: Population | None = None,
                plans: list[AttackPlan] | None = None) -> Iterator[Chunk]:
    """Every chunk of the simulation, in output order: per hour, the benign node blocks, then
    the attacks active in that hour (by id). Empty chunks are skipped."""
    pop = population or Population.build(config)
    plans = plan_attacks(config, pop.nodes) if plans is None else plans
    model = BenignModel(pop)
    active: dict[int, list[AttackPlan]] = defaultdict(list)
    for plan in plans:
        for hour in plan.hours():
            active[hour].append(plan)
    first_hour = config.start_us // _HOUR_US
    for hour in range(first_hour, first_hour + config.hours):
        stamp = datetime.fromtimestamp(hour * 3600, UTC)
        day, tag = stamp.strftime("%Y-%m-%d"), stamp.strftime("%Y-%m-%dT%H")
        for block in range(model.blocks()):
            records = model.records(hour, block)
            yield from _chunk(config, records, day, BENIGN_LABEL, None, None, f"simulate/benign/{tag}/nodes-{block:04d}")
        for plan in active[hour]:
            records = attack_records(config, pop, plan, hour)
            yield from _chunk(config, records, day, plan.label, plan.scenario, plan.id, f"simulate/attack-{plan.id:03d}/{tag}")


def _chunk(config: SimConfig, records: Records, day: str, label: str, detail: str | None,
           attack_id: int | None, source: str) -> Iterator[Chunk]:
    if len(records) == 0:
        return
    if not config.bidirectional:
        records = split_directions(records)
    packets, nbytes = records.sums()
    yield Chunk(day, label, detail, attack_id, to_table(records, label, detail, source), packets, nbytes,
                int(records.start_us.min()), int((records.start_us + records.dur_us).max()))


def _answer_share(config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per role: the share of its flows that get an answer (random and periodic flows)."""
    def share(name: str) -> float:
        s = SERVICES[name]
        return s.answered + (s.rejected if s.proto == 6 else 0.0)

    mixed = [sum(w * share(n) for n, w in r.services) / sum(w for _, w in r.services) for r in config.roles]
    periodic = [share(r.periodic_service) if r.periodic_service else 0.0 for r in config.roles]
    return np.array(mixed), np.array(periodic)


def expected_flows(config: SimConfig, population: Population | None = None,
                   plans: list[AttackPlan] | None = None) -> tuple[float, float]:
    """Expected (benign, attack) flow records of a simulation: what the progress bar counts to."""
    pop = population or Population.build(config)
    plans = plan_attacks(config, pop.nodes) if plans is None else plans
    model = BenignModel(pop)
    mixed, periodic = _answer_share(config)
    uni = 0.0 if config.bidirectional else 1.0
    first_hour = config.start_us // _HOUR_US
    benign = 0.0
    role = pop.role
    has_period = np.isfinite(pop.period_s)
    per_periodic = np.where(has_period, 3600.0 / np.where(has_period, pop.period_s, 1.0), 0.0) * (1 + uni * periodic[role])
    for hour in range(first_hour, first_hour + config.hours):
        how = hour_of_week(hour, config.utc_offset_hours)
        poisson = pop.mean_rate * model.poisson_share[role] * model.week[role, how]
        benign += float((poisson * (1 + uni * mixed[role])).sum() + per_periodic.sum())
    attack = sum(p.expected_flows() * (1 + uni * SCENARIOS[p.scenario].answered) for p in plans)
    return benign, attack


def scale_to_flows(config: SimConfig, flows: int) -> SimConfig:
    """The config with ``flows_per_node_hour`` set so that about ``flows`` records come out
    (benign and attacks together; the count varies by about its square root).

    >>> c = scale_to_flows(SimConfig(nodes=50, hours=24, seed=1), 1_000_000)
    >>> round(sum(expected_flows(c)))
    1000000
    """
    probe = config.with_(flows_per_node_hour=1.0)
    benign, attack = expected_flows(probe)
    if flows < attack:
        raise ValueError(f"the attacks alone are expected to make {attack:,.0f} flows, more than {flows:,}")
    if benign <= 0:
        raise ValueError("no benign traffic in this config (shapes or shares are zero)")
    return config.with_(flows_per_node_hour=(flows - attack) / benign)


@dataclass
class SimSummary(Summary):
    """What a simulation wrote; also stored in the dataset's manifest (without the time taken and
    the path, so that the same config gives the same files wherever they are written)."""

    _untimed = ("seconds", "out")

    out: str
    synthetic: bool = True
    seed: int = 0
    nodes: int = 0
    nodes_by_role: dict[str, int] = field(default_factory=dict)
    hours: int = 0
    bidirectional: bool = True
    rows_written: int = 0
    """Flow records written."""
    packets: int = 0
    bytes: int = 0
    first_start: str | None = None
    last_end: str | None = None
    label_counts: dict[str, int] = field(default_factory=dict)
    label_detail_counts: dict[str, int] = field(default_factory=dict)
    attacks: list[dict[str, object]] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    inputs: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0



class _ParquetSink:
    """Writes tables into date=DAY/part-00000.parquet on a second thread, in the order given.

    Tables are buffered to about ``ROW_GROUP_ROWS`` rows per row group. Generation (numpy) and
    writing (Arrow's Parquet encoder) both release the GIL, so the two run on two cores.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=3)
        self.error: BaseException | None = None
        self.days: list[str] = []
        self._thread = threading.Thread(target=self._run, name="simulate-writer", daemon=True)
        self._thread.start()

    def put(self, day: str, table: pa.Table) -> None:
        while True:
            if self.error is not None:
                raise RuntimeError(f"writing the flows failed: {self.error}") from self.error
            try:
                self.queue.put((day, table), timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> list[str]:
        """Finish writing; raises what the writer thread raised."""
        while self._thread.is_alive():
            try:
                self.queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"writing the flows failed: {self.error}") from self.error
        return [partition(d) for d in self.days]

    def abort(self) -> None:
        """Stop after the table being written (the caller discards the output)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.close_quietly()

    def close_quietly(self) -> None:
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join()

    def _run(self) -> None:
        writer: pq.ParquetWriter | None = None
        pending: list[pa.Table] = []
        rows = 0

        def flush() -> None:
            nonlocal pending, rows
            if pending and writer is not None:
                table = pa.concat_tables(pending)
                writer.write_table(table, row_group_size=table.num_rows)
            pending, rows = [], 0

        try:
            while (item := self.queue.get()) is not None:
                day, table = item
                if not self.days or day != self.days[-1]:
                    flush()
                    if writer is not None:
                        writer.close()
                    path = part_path(self.root, day, 0)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(path, SCHEMA, **WRITER_OPTIONS)  # type: ignore[arg-type]
                    self.days.append(day)
                pending.append(table)
                rows += table.num_rows
                if rows >= ROW_GROUP_ROWS:
                    flush()
            flush()
            if writer is not None:
                writer.close()
        except BaseException as e:  # noqa: BLE001 (handed to the generating thread)
            self.error = e
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self.queue.get(timeout=0.5) is None:
                        break
                except queue.Empty:
                    break


def simulate(config: SimConfig, out: str | Path, progress: Callable[[int, int], None] | None = None,
             overwrite: bool = False) -> SimSummary:
    """Generate the flows ``config`` describes into the dataset directory ``out``.

    ``progress(flows_written, flows_expected)`` is called after every chunk. The directory appears
    atomically (an interrupted run leaves nothing); ``overwrite`` replaces an existing one.
    """
    started = time.perf_counter()
    out = Path(out)
    pop = Population.build(config)
    plans = plan_attacks(config, pop.nodes)
    expected = round(sum(expected_flows(config, pop, plans)))
    summary = SimSummary(out=str(out), seed=config.seed, nodes=pop.nodes, hours=config.hours,
                         bidirectional=config.bidirectional)
    names = [r.name for r in config.roles]
    summary.nodes_by_role = {name: int((pop.role == i).sum()) for i, name in enumerate(names)}
    labels: Counter[str] = Counter()
    details: Counter[str] = Counter()
    per_attack: dict[int, list[int]] = {p.id: [0, 0, 0] for p in plans}
    first = last = None
    with atomic_directory(out, overwrite) as tmp:
        sink = _ParquetSink(tmp)
        try:
            for chunk in iter_chunks(config, pop, plans):
                sink.put(chunk.day, chunk.table)
                n = chunk.table.num_rows
                summary.rows_written += n
                summary.packets += chunk.packets
                summary.bytes += chunk.bytes
                labels[chunk.label] += n
                if chunk.detail is not None:
                    details[chunk.detail] += n
                if chunk.attack_id is not None:
                    tally = per_attack[chunk.attack_id]
                    tally[0] += n
                    tally[1] += chunk.packets
                    tally[2] += chunk.bytes
                first = chunk.first_us if first is None else min(first, chunk.first_us)
                last = chunk.last_us if last is None else max(last, chunk.last_us)
                if progress:
                    progress(summary.rows_written, expected)
        except BaseException:
            sink.abort()
            raise
        summary.partitions = sink.close()
        summary.first_start = _iso(first)
        summary.last_end = _iso(last)
        summary.label_counts = dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
        summary.label_detail_counts = dict(sorted(details.items(), key=lambda kv: (-kv[1], kv[0])))
        summary.attacks = [
            {**p.row(pop.addresses[p.victim].as_py()), "flows": per_attack[p.id][0], "packets": per_attack[p.id][1],
             "bytes": per_attack[p.id][2]}
            for p in plans
        ]
        summary.inputs = [{"source": "netflowgen simulate (SYNTHETIC)", "format": "synthetic",
                           "rows_read": summary.rows_written, "rows_written": summary.rows_written, "rows_rejected": 0}]
        _write_sidecars(tmp, pop, summary)
        _write_manifest(tmp, config, summary)
        summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC).isoformat()


_ATTACK_SCHEMA = {
    "attack_id": pl.Int64, "label": pl.String, "scenario": pl.String, "victim": pl.String, "victim_port": pl.Int64,
    "start": pl.String, "end": pl.String, "ramp_s": pl.Float64, "peak_flows_per_s": pl.Float64, "sources": pl.Int64,
    "flows": pl.Int64, "packets": pl.Int64, "bytes": pl.Int64,
}


def _write_sidecars(folder: Path, pop: Population, summary: SimSummary) -> None:
    pl.DataFrame(schema=REJECT_SCHEMA).write_csv(folder / REJECTS_NAME)
    pl.DataFrame(summary.attacks, schema=_ATTACK_SCHEMA).write_csv(folder / ATTACKS_NAME)
    pop.node_table().write_csv(folder / NODES_NAME)


def _write_manifest(folder: Path, config: SimConfig, summary: SimSummary) -> None:
    write_dataset_manifest(
        folder,
        layout_note=f" (empty); ground truth in {ATTACKS_NAME}, nodes in {NODES_NAME}",
        synthetic=True,
        note="SYNTHETIC flows generated by `netflowgen simulate`, not captured traffic",
        generator="netflowgen simulate",
        records="bidirectional: one record per connection" if config.bidirectional
        else "unidirectional: one record per direction, rev_* = 0",
        config=config.to_dict(),
        # Timing is left out so that the same config gives the same dataset, byte for byte.
        summary=summary.to_dict(timing=False),
        # The simulator observed every instant it simulated: its window, not its records' span.
        coverage=Coverage.of([(config.start_us, config.start_us + config.hours * 3_600_000_000)], "simulated window").to_dict(),
    )
