"""Inject: place real attack flows onto real benign background traffic (trace-driven evaluation).

Real labeled DDoS traffic is scarce, so attacks are evaluated the way the literature does it:
flows of a real attack capture (for example one-way captures taken at a victim) are replayed onto
real background traffic at a chosen victim, time and intensity. The result is a flow dataset in
the layout ``netflowgen ingest`` writes, plus the ground truth of what was injected::

    OUT/
      date=2018-12-21/part-00000.parquet   the background's flows, unchanged (its own part files)
      date=2018-12-21/part-00001.parquet   the injected flows (part numbers after the background's)
      rejects.csv                          the background's set-aside rows, then the attacks'
      injections.csv                       one row per injection of this run: the ground truth
      netflowgen.json                      kind "netflowgen.flows", every parameter and the seed

Method, for each injection:

* **Attack victim.** The capture's own victim is the address that receives most of its flows
  (ties: the smallest address), or the one given (``attack_victim``). Flows of the capture that
  neither come from nor go to it (stray traffic caught on the link) are left out and counted.
* **Re-time.** Every attack flow is shifted by one offset so that the capture's first flow
  starts at the chosen time; start-to-start gaps and durations are kept to the microsecond.
* **Re-address.** The capture's victim is replaced by the chosen victim wherever it appears:
  the destination of flows towards it, the source of flows leaving it. Attackers' addresses and
  every port are kept.
* **Intensity** (sampling the capture's flows with the injection's seeded generator, uniformly
  without replacement; at least one flow is kept):

  - a fraction ``0 < f <= 1`` (``0.25``): exactly ``f * n`` rounded half up of the capture's
    ``n`` flows (those from or to its victim);
  - a multiple ``Nx`` (``2x``): the fraction ``f = N * victim / attack``, capped at 1, where
    ``victim`` is the chosen victim's median flows per step over its active steps in the
    background (flows from or to it; a step is ``rate_step``, 60 s by default, aligned to the
    Unix epoch as in ``netflowgen series``) and ``attack`` the capture's median flows per step
    over its active steps, counted where it is placed. Sampling scales every step's count by
    about ``f``, so the injected attack runs at about N times the victim's usual rate: as faint
    as its normal traffic (``1x``) or as loud as the whole capture (the cap). The fraction
    reached and both medians are written to ``injections.csv``.
* **Labels.** Injected flows get ``label`` (default ``DDoS``) and ``label_detail`` = the
  attack type (default: the capture file's stem, e.g. ``amp.UDP.snmp.src161``). ``quality``,
  ``source_file`` and ``source_row`` keep pointing at the capture's record. Background rows are
  copied as they are, labels included.

How several injections combine (one call, one seed):

* Victims: the ``victims`` given, in order, or ``n_victims`` drawn without replacement among the
  background's local nodes: addresses inside ``local_prefixes`` (private ranges by default) that
  sent packets, i.e. the source of a flow with forward packets or the destination of a flow with
  reverse packets (so broadcast or unused addresses that only received scans are not drawn), of
  an address family that one of the attacks has.
* Times: the ``times`` given, or ``n_times`` per victim. There is one injection per
  (victim, time) pair, victim-major: ``victims x times`` injections, numbered from 0 in that
  order. A drawn time is uniform over the starts at which the whole attack (first start to last
  end of the capture) fits inside the background's span; a given time must fit likewise.
* Attacks: each injection draws one of the attack files (uniformly, among those whose victim has
  the chosen victim's address family).
* Intensities are cycled: injection ``i`` uses ``intensities[i % len(intensities)]``.
* Randomness: victims come from ``numpy.random.default_rng(seed)``; injection ``i`` draws its
  attack, then its time, then its flows from ``default_rng([seed, i])``, so an injection does
  not change when more are added after it. The same inputs and seed give the same dataset.
* Injections are independent: two may overlap in time on the same victim.
* A background that is itself an injected dataset can take more injections; its manifest
  (with the earlier ground truth) is kept in the new manifest as ``background_manifest``.

The background's span runs from its first flow start to its last flow end, leaving out rows
flagged ``EPOCH_CLOCK`` (1970 clocks) unless every row has it.

Caveats (what this method does not model):

* One-way captures taken at the victim hold no responses: the victim never answers (no SYN-ACKs
  to a SYN flood, no ICMP errors), and the background holds no reaction of the victim either.
* Attackers' addresses are kept as captured (spoofed or real, often public); they may collide
  with addresses of the background by chance.
* No interaction with the background: no congestion, loss or queueing, no change in the
  victim's own traffic during the attack, no mitigation; the attack's flows are added, nothing
  of the background is removed or delayed.
* The capture's flow export shaped its flows (for pcaps: nfpcapd's timeouts and its one record
  per DNS packet), which may differ from how the background's exporter cuts flows; the
  timestamps' precision is the capture's.
* Sampling flows thins an attack by dropping whole flows; it does not lower the packets per
  flow, and per-source rates fall with the fraction kept.
* The attack's place in the day is chosen, not its fit with the victim: a victim that is idle at
  the chosen time still gets the attack.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from netflowgen.artifacts import atomic_directory, read_manifest
from netflowgen.dataset.coverage import Coverage, coverage_of_flows
from netflowgen.dataset.layout import REJECTS_NAME, PartitionWriter, part_files, part_location
from netflowgen.dataset.manifest import DATASET_KIND, is_dataset, write_dataset_manifest
from netflowgen.read import ReadOptions, iter_checked
from netflowgen.read.validate import REJECT_SCHEMA
from netflowgen.schema import FLOW_SCHEMA, Quality
from netflowgen.series.nodes import is_local
from netflowgen.simulate.inject_config import (
    EPOCH,
    MICROSECOND,
    NAT64_PREFIX,
    AttackCapture,
    InjectConfig,
    Injection,
    InjectSummary,
    Intensity,
    IntensityMode,
    address_family,
    attack_type_of,
    parse_time,
)

__all__ = [
    "INJECTIONS_NAME",
    "InjectConfig",
    "InjectSummary",
    "Intensity",
    "IntensityMode",
    "attack_type_of",
    "inject",
    "parse_time",
]

log = logging.getLogger(__name__)

INJECTIONS_NAME = "injections.csv"

#: progress(stage, done, total): stage "background" (part files copied, or rows read where the
#: total is not known: total 0), then "inject" (injections written).
Progress = Callable[[str, int, int], None]


@dataclass
class _Attack:
    """An attack capture in memory: the flows from or to its victim, sorted by start."""

    info: AttackCapture
    flows: pl.DataFrame
    rejects: pl.DataFrame
    first_us: int
    last_us: int


@dataclass
class _Background:
    """The background's part files (in the output already, or still in the source dataset)."""

    parts: list[Path]
    copy_from: Path | None
    rejects: Path | None
    inputs: list[dict[str, object]]
    manifest: dict[str, object] | None = None
    """The background dataset's own manifest (with the ground truth of earlier injections)."""

    def coverage(self) -> Coverage:
        stored = (self.manifest or {}).get("coverage")
        return Coverage.from_dict(stored) if stored else coverage_of_flows(self.scan())  # type: ignore[arg-type]

    def scan(self) -> pl.LazyFrame:
        if not self.parts:
            raise ValueError("the background has no flows")
        return pl.scan_parquet(self.parts)


def inject(config: InjectConfig, out: Path, progress: Progress | None = None) -> InjectSummary:
    """Inject the attacks onto the background and write the dataset ``out``; returns what was done.

    ``out`` appears atomically (replacing an existing one only with ``config.overwrite``); an
    error or an interruption leaves nothing behind. ``progress(stage, done, total)`` is called as
    the background is read or copied (stage ``background``) and after each injection (``inject``).
    """
    for path in (config.background, *config.attacks):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
    started = time.perf_counter()
    # Attacks are small (captures of seconds to minutes): read them first, so that an attack
    # without flows fails before a large background is read.
    attacks = [_load_attack(config, i) for i in range(len(config.attacks))]
    with atomic_directory(Path(out), config.overwrite) as tmp:
        summary, background = _write(config, attacks, tmp, progress)
        summary.out = str(out)
        summary.seconds = round(time.perf_counter() - started, 3)
        _write_manifest(tmp, config, summary, background)
    return summary


def _read_all(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[str], int]:
    """Flows, rejects, formats and rows read of a (small) input."""
    if is_dataset(path):
        read_manifest(path, DATASET_KIND)
        parts = part_files(path)
        flows = pl.read_parquet(parts) if parts else pl.DataFrame(schema=FLOW_SCHEMA)
        return flows.cast(FLOW_SCHEMA), pl.DataFrame(schema=REJECT_SCHEMA), ["dataset"], flows.height  # type: ignore[arg-type]
    frames, rejects, formats = [], [], []
    for _source, fmt, checked in iter_checked(path):
        frames.append(checked.flows)
        rejects.append(checked.rejects)
        if fmt.name not in formats:
            formats.append(fmt.name)
    flows = pl.concat(frames).cast(FLOW_SCHEMA) if frames else pl.DataFrame(schema=FLOW_SCHEMA)  # type: ignore[arg-type]
    rej = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECT_SCHEMA)
    return flows, rej, formats, flows.height + rej.height


def _load_attack(config: InjectConfig, index: int) -> _Attack:
    path = Path(config.attacks[index])
    flows, rejects, formats, rows_read = _read_all(path)
    if flows.height == 0:
        raise ValueError(f"attack {path}: no flows ({rows_read} rows read, {rejects.height} rejected)")
    if config.attack_victim is not None:
        victim = config.attack_victim
    else:
        top = flows.group_by("dst_ip").len().sort(["len", "dst_ip"], descending=[True, False])
        victim = top["dst_ip"][0]
    touching = flows.filter((pl.col("src_ip") == victim) | (pl.col("dst_ip") == victim))
    if touching.height == 0:
        raise ValueError(f"attack {path}: no flow comes from or goes to the attack victim {victim}")
    # A fixed order makes the seeded sample independent of the order the reader returned rows in.
    touching = touching.sort(["ts_start", "ts_end", "source_file", "source_row"], nulls_last=True)
    first = touching["ts_start"].min()
    last = touching["ts_end"].max()
    info = AttackCapture(
        path=str(path), attack_type=config.attack_type(index), formats=formats, rows_read=rows_read,
        rows_rejected=rejects.height, victim=victim, victim_given=config.attack_victim is not None,
        flows=touching.height, flows_left_out=flows.height - touching.height,
        first_start=first.isoformat(), last_end=last.isoformat(),  # type: ignore[union-attr]
        duration_seconds=(last - first).total_seconds(),  # type: ignore[operator]
    )
    if info.flows_left_out:
        log.info("attack %s: %d flows neither from nor to %s are not injected", path, info.flows_left_out, victim)
    return _Attack(info, touching, rejects, _us(first), _us(last))  # type: ignore[arg-type]


def _us(t: datetime) -> int:
    return (t - EPOCH) // MICROSECOND


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _write(config: InjectConfig, attacks: list[_Attack], tmp: Path, progress: Progress | None) -> tuple[InjectSummary, _Background]:
    summary = InjectSummary(out="", seed=config.seed, attacks=[a.info for a in attacks])
    writer = PartitionWriter(tmp)
    background = _prepare_background(Path(config.background), tmp, writer, progress, config.background_filter)
    lazy = background.scan()
    span = _span(lazy)
    victims = list(dict.fromkeys(v for v, _ in config.schedule)) if config.schedule else _choose_victims(config, lazy, attacks)
    medians = _victim_medians(lazy, victims, config.rate_step)
    coverage = background.coverage() if config.within_coverage else None
    unseen = [v for v in victims if v not in medians]
    if unseen:
        raise ValueError(f"victim {', '.join(unseen)} never occurs in the background {config.background}")
    plan = _plan(config, attacks, victims, span, medians)  # every check is done before copying
    if background.copy_from is not None:
        _copy_background(background, tmp, writer, progress)
    for i, step in enumerate(plan):
        summary.injections.append(_inject_one(config, step, attacks, writer, medians, coverage))
        if progress:
            progress("inject", i + 1, len(plan))
    summary.partitions = writer.close()
    _write_rejects(background, attacks, tmp)
    with open(tmp / INJECTIONS_NAME, "wb") as f:
        pl.DataFrame([asdict(j) for j in summary.injections], schema=_INJECTION_SCHEMA).write_csv(f)
    _tally(tmp, summary)
    summary.inputs = background.inputs + [
        {"source": a.info.path, "format": "+".join(a.info.formats), "rows_read": a.info.rows_read,
         "rows_written": sum(j.flows for j in summary.injections if j.attack_file == a.info.path),
         "rows_rejected": a.info.rows_rejected}
        for a in attacks
    ]
    return summary, background


_INJECTION_SCHEMA = {
    "id": pl.Int64, "victim": pl.String, "attack_file": pl.String, "attack_type": pl.String,
    "original_victim": pl.String, "at": pl.String, "start": pl.String, "end": pl.String,
    "intensity": pl.String, "fraction": pl.Float64, "flows": pl.Int64, "packets": pl.Int64, "bytes": pl.Int64,
    "capture_flows": pl.Int64, "victim_median_per_step": pl.Float64, "capture_median_per_step": pl.Float64,
    "injected_median_per_step": pl.Float64, "flows_outside_coverage": pl.Int64,
}


def _prepare_background(path: Path, tmp: Path, writer: PartitionWriter, progress: Progress | None,
                        flow_filter: str | None = None) -> _Background:
    """A dataset is scanned where it is (and copied once every check passed); any other input, or
    a dataset with a filter, is read batch by batch into the output's partitions now, as
    ``ingest`` would write it."""
    options = ReadOptions(filter=flow_filter)
    if is_dataset(path) and flow_filter is not None:
        manifest = read_manifest(path, DATASET_KIND)
        rows = 0
        try:
            for part in part_files(path):
                for batch in pq.ParquetFile(part).iter_batches(batch_size=1 << 18):
                    flows = pl.from_arrow(batch)
                    writer.write(options.select(flows))  # type: ignore[arg-type]
                    rows += flows.height
                    if progress:
                        progress("background", rows, 0)
        finally:
            writer.close()
        rejects = path / REJECTS_NAME
        if rejects.is_file():
            shutil.copyfile(rejects, tmp / REJECTS_NAME)
        inputs = manifest.get("summary", {}).get("inputs") or [{"source": str(path), "format": "dataset"}]
        return _Background(part_files(tmp), None, None, list(inputs), manifest)
    if is_dataset(path):
        manifest = read_manifest(path, DATASET_KIND)
        parts = part_files(path)
        rejects = path / REJECTS_NAME
        inputs = manifest.get("summary", {}).get("inputs") or [{"source": str(path), "format": "dataset"}]
        return _Background(parts, path, rejects if rejects.is_file() else None, list(inputs), manifest)
    per_input: dict[str, dict[str, object]] = {}
    rows = 0
    with open(tmp / REJECTS_NAME, "wb") as rejects_file:
        pl.DataFrame(schema=REJECT_SCHEMA).write_csv(rejects_file)
        try:
            for source, fmt, checked in iter_checked(path):
                kept = options.select(checked.flows)
                writer.write(kept)
                if checked.rejects.height:
                    checked.rejects.write_csv(rejects_file, include_header=False)
                entry = per_input.setdefault(source.name, {"source": source.name, "format": fmt.name, "rows_read": 0,
                                                           "rows_written": 0, "rows_rejected": 0})
                entry["rows_read"] += checked.flows.height + checked.rejects.height  # type: ignore[operator]
                entry["rows_written"] += kept.height  # type: ignore[operator]
                entry["rows_rejected"] += checked.rejects.height  # type: ignore[operator]
                rows += checked.flows.height + checked.rejects.height
                if progress:
                    progress("background", rows, 0)
        finally:
            writer.close()
    return _Background(part_files(tmp), None, None, list(per_input.values()))


def _copy_background(background: _Background, tmp: Path, writer: PartitionWriter, progress: Progress | None) -> None:
    """Copy the dataset's part files as they are (byte-identical); injected parts number after them."""
    assert background.copy_from is not None
    for i, part in enumerate(background.parts):
        target = tmp / part.relative_to(background.copy_from)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(part, target)
        day, n = part_location(part)
        number = n + 1 if n is not None else writer.parts[day] + 1
        writer.parts[day] = max(writer.parts[day], number)
        if progress:
            progress("background", i + 1, len(background.parts))
    background.parts = part_files(tmp)


def _span(lazy: pl.LazyFrame) -> tuple[int, int]:
    """First start and last end of the background (µs since the epoch), 1970 clocks left out."""
    sane = (pl.col("quality") & int(Quality.EPOCH_CLOCK)) == 0
    row = lazy.select(
        pl.col("ts_start").filter(sane).min().alias("lo"),
        pl.col("ts_end").filter(sane).max().alias("hi"),
        pl.col("ts_start").min().alias("lo_all"),
        pl.col("ts_end").max().alias("hi_all"),
    ).collect(engine="streaming").row(0, named=True)
    lo, hi = (row["lo"], row["hi"]) if row["lo"] is not None else (row["lo_all"], row["hi_all"])
    if lo is None:
        raise ValueError("the background has no flows")
    return _us(lo), _us(hi)


def _choose_victims(config: InjectConfig, lazy: pl.LazyFrame, attacks: list[_Attack]) -> list[str]:
    families = {address_family(a.info.victim) for a in attacks} | ({6} if config.translate_family else set())
    if config.victims:
        for v in config.victims:
            if address_family(v) not in families:
                raise ValueError(f"victim {v} is IPv{address_family(v)}, but no attack has an IPv{address_family(v)} victim")
        return list(config.victims)
    senders = pl.concat([
        lazy.filter(pl.col("fwd_packets") > 0).select(pl.col("src_ip").alias("ip")),
        lazy.filter(pl.col("rev_packets") > 0).select(pl.col("dst_ip").alias("ip")),
    ]).unique().collect(engine="streaming")
    # Filtered once collected: in the lazy plan the filter would be pushed below unique() and
    # parse every row's address instead of every distinct one (about 60 times slower at 10M flows).
    local = senders.filter(is_local(pl.col("ip"), config.local_prefixes)).sort("ip")["ip"]
    candidates = [ip for ip in local.to_list() if address_family(ip) in families]
    assert config.n_victims is not None
    if config.n_victims > len(candidates):
        raise ValueError(
            f"cannot draw {config.n_victims} victims: the background has {len(candidates)} local nodes that send "
            f"traffic (in {', '.join(config.local_prefixes)}, of the attacks' address family)"
        )
    rng = np.random.default_rng(config.seed)
    return [candidates[i] for i in rng.choice(len(candidates), size=config.n_victims, replace=False)]


def _victim_medians(lazy: pl.LazyFrame, victims: list[str], rate_step: timedelta) -> dict[str, float]:
    """Median flows per step of each victim over its active steps (flows from or to it, once)."""
    step = (pl.col("ts_start").dt.epoch("us") // (rate_step // MICROSECOND)).alias("step")
    touching = pl.concat([
        lazy.filter(pl.col("src_ip").is_in(victims)).select(pl.col("src_ip").alias("node"), step),
        lazy.filter(pl.col("dst_ip").is_in(victims) & (pl.col("dst_ip") != pl.col("src_ip")))
        .select(pl.col("dst_ip").alias("node"), step),
    ])
    rates = (
        touching.group_by("node", "step").len()
        .group_by("node").agg(pl.col("len").median().alias("median"))
        .collect(engine="streaming")
    )
    return dict(zip(rates["node"].to_list(), rates["median"].to_list()))


@dataclass(frozen=True)
class _Step:
    """One planned injection."""

    id: int
    victim: str
    attack: int
    at_us: int
    intensity: Intensity
    rng: np.random.Generator


def _plan(config: InjectConfig, attacks: list[_Attack], victims: list[str], span: tuple[int, int],
          medians: dict[str, float]) -> list[_Step]:
    lo, hi = span
    per_victim = len(config.times) or config.n_times or 0
    if config.schedule:  # explicit pairs: injection i is the i-th pair
        pairs = [(victim, [t]) for victim, t in config.schedule]
    else:
        pairs = [(victim, list(config.times) or [None] * per_victim) for victim in victims]
    plan = []
    i = -1
    for victim, times in pairs:
        fits = [i for i, a in enumerate(attacks) if address_family(a.info.victim) == address_family(victim)
                or (config.translate_family and address_family(victim) == 6)]
        if not fits:
            raise ValueError(f"victim {victim} is IPv{address_family(victim)}, but no attack has an IPv{address_family(victim)} victim")
        for when in times:
            i += 1
            rng = np.random.default_rng([config.seed, i])
            a = fits[int(rng.integers(len(fits)))]
            length = attacks[a].last_us - attacks[a].first_us
            name = attacks[a].info.path
            if when is not None:
                at = _us(when)
                if not lo <= at <= hi:
                    raise ValueError(
                        f"start time {when.isoformat()} lies outside the background's span "
                        f"{_time(lo).isoformat()} .. {_time(hi).isoformat()}"
                    )
                if at + length > hi:
                    raise ValueError(
                        f"start time {when.isoformat()}: attack {name} lasts {timedelta(microseconds=length)} "
                        f"and would end after the background (ends {_time(hi).isoformat()}); start it by "
                        f"{_time(hi - length).isoformat()}"
                    )
            else:
                if length > hi - lo:
                    raise ValueError(
                        f"attack {name} lasts {timedelta(microseconds=length)}, longer than the background's span "
                        f"{_time(lo).isoformat()} .. {_time(hi).isoformat()}"
                    )
                at = lo + int(rng.integers(hi - lo - length + 1))
            plan.append(_Step(i, victim, a, at, config.intensities[i % len(config.intensities)], rng))
    return plan


def _to_ipv6(flows: pl.DataFrame, victim: str) -> pl.DataFrame:
    """IPv4 attack flows as seen behind a NAT64 gateway (see InjectConfig.translate_family)."""
    others = set(flows["src_ip"].to_list()) | set(flows["dst_ip"].to_list())
    mapping = {ip: str(ipaddress.IPv6Address(NAT64_PREFIX + int(ipaddress.IPv4Address(ip))))
               for ip in others if ip != victim and address_family(ip) == 4}
    return flows.with_columns(
        pl.col("src_ip").replace(mapping), pl.col("dst_ip").replace(mapping),
        pl.when(pl.col("proto") == 1).then(pl.lit(58, pl.UInt8)).otherwise(pl.col("proto")).cast(flows.schema["proto"]).alias("proto"),
    )


def _median_per_step(ts_us: np.ndarray, step_us: int) -> float:
    _, counts = np.unique(ts_us // step_us, return_counts=True)
    return float(np.median(counts)) if counts.size else 0.0


def _inject_one(config: InjectConfig, step: _Step, attacks: list[_Attack], writer: PartitionWriter,
                medians: dict[str, float], coverage: Coverage | None = None) -> Injection:
    attack = attacks[step.attack]
    flows = attack.flows
    n = flows.height
    offset = step.at_us - attack.first_us
    step_us = config.rate_step // MICROSECOND
    placed = flows["ts_start"].dt.epoch("us").to_numpy() + offset
    capture_median = _median_per_step(placed, step_us)
    victim_median = float(medians[step.victim])
    if step.intensity.mode is IntensityMode.FRACTION:
        asked = step.intensity.value
    else:
        asked = min(1.0, step.intensity.value * victim_median / capture_median)
    keep = max(1, math.floor(asked * n + 0.5))
    rows = np.sort(step.rng.choice(n, size=keep, replace=False))
    shift = pl.duration(microseconds=offset)
    original = attack.info.victim
    injected = flows[rows].with_columns(
        pl.col("ts_start") + shift,
        pl.col("ts_end") + shift,
        pl.when(pl.col("src_ip") == original).then(pl.lit(step.victim)).otherwise(pl.col("src_ip")).alias("src_ip"),
        pl.when(pl.col("dst_ip") == original).then(pl.lit(step.victim)).otherwise(pl.col("dst_ip")).alias("dst_ip"),
        pl.lit(config.label, pl.String).alias("label"),
        pl.lit(attack.info.attack_type, pl.String).alias("label_detail"),
    ).select(list(FLOW_SCHEMA)).cast(FLOW_SCHEMA)  # type: ignore[arg-type]
    if address_family(step.victim) == 6 and address_family(original) == 4:
        injected = _to_ipv6(injected, step.victim)
    outside = 0
    if coverage is not None:
        seen = coverage.contains(injected["ts_end"].dt.epoch("us").to_numpy())
        outside = int((~seen).sum())
        injected = injected.filter(pl.Series(seen))
    if injected.height == 0:
        # Nothing of it was observed: the ground truth keeps the row (0 flows), nothing is written.
        log.info("injection %d on %s at %s: every flow ends outside the background's coverage", step.id,
                    step.victim, _time(step.at_us).isoformat())
        at = _time(step.at_us).isoformat()
        return Injection(
            id=step.id, victim=step.victim, attack_file=attack.info.path, attack_type=attack.info.attack_type,
            original_victim=original, at=at, start=at, end=at, intensity=str(step.intensity), fraction=0.0, flows=0,
            packets=0, bytes=0, capture_flows=n, victim_median_per_step=victim_median,
            capture_median_per_step=capture_median, injected_median_per_step=0.0, flows_outside_coverage=outside,
        )
    writer.write(injected)
    packets, bytes_, lo, hi = injected.select(
        pl.col("fwd_packets").sum() + pl.col("rev_packets").sum(),
        pl.col("fwd_bytes").sum() + pl.col("rev_bytes").sum(),
        pl.col("ts_start").min(),
        pl.col("ts_end").max(),
    ).row(0)
    return Injection(
        id=step.id, victim=step.victim, attack_file=attack.info.path, attack_type=attack.info.attack_type,
        original_victim=original, at=_time(step.at_us).isoformat(), start=lo.isoformat(), end=hi.isoformat(),
        intensity=str(step.intensity), fraction=keep / n, flows=injected.height, packets=int(packets), bytes=int(bytes_),
        capture_flows=n, victim_median_per_step=victim_median, capture_median_per_step=capture_median,
        injected_median_per_step=_median_per_step(placed[rows], step_us), flows_outside_coverage=outside,
    )


def _write_rejects(background: _Background, attacks: list[_Attack], tmp: Path) -> None:
    target = tmp / REJECTS_NAME
    if background.copy_from is not None:
        if background.rejects is not None:
            shutil.copyfile(background.rejects, target)
        else:
            pl.DataFrame(schema=REJECT_SCHEMA).write_csv(target)
    with open(target, "ab") as f:
        for a in attacks:
            if a.rejects.height:
                a.rejects.write_csv(f, include_header=False)


def _tally(tmp: Path, summary: InjectSummary) -> None:
    """Counts of the finished dataset (one streaming pass over it)."""
    lazy = pl.scan_parquet(part_files(tmp))
    totals, labels = pl.collect_all([
        lazy.select(
            pl.len().alias("rows"),
            (pl.col("fwd_packets").sum() + pl.col("rev_packets").sum()).alias("packets"),
            (pl.col("fwd_bytes").sum() + pl.col("rev_bytes").sum()).alias("bytes"),
            pl.col("ts_start").min().alias("first"),
            pl.col("ts_end").max().alias("last"),
        ),
        lazy.group_by("label").len(),
    ], engine="streaming")
    row = totals.row(0, named=True)
    summary.rows_written = int(row["rows"])
    summary.injected_rows = sum(j.flows for j in summary.injections)
    summary.background_rows = summary.rows_written - summary.injected_rows
    summary.packets = int(row["packets"] or 0)
    summary.bytes = int(row["bytes"] or 0)
    summary.first_start = row["first"].isoformat() if row["first"] else None
    summary.last_end = row["last"].isoformat() if row["last"] else None
    counts = {("(none)" if k is None else k): int(n) for k, n in labels.iter_rows()}
    summary.label_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    rejects = pl.read_csv(tmp / REJECTS_NAME, schema_overrides={"raw": pl.String, "reason": pl.String})
    summary.rows_rejected = rejects.height


def _write_manifest(tmp: Path, config: InjectConfig, summary: InjectSummary, background: _Background) -> None:
    write_dataset_manifest(
        tmp,
        layout_note="; the ground truth of injected attacks in " + INJECTIONS_NAME,
        inputs_given=[str(config.background), *map(str, config.attacks)],
        injection=config.to_dict(),
        # A background that is itself an injected dataset keeps its ground truth here (and in
        # its own injections.csv); this dataset's injections.csv lists this run's only.
        background_manifest=background.manifest,
        # Timing is left out so that the same inputs and seed give the same dataset, byte for byte.
        summary=summary.to_dict(timing=False),
        # What the background observed: the injected flows are placed into it, they observe nothing.
        coverage=background.coverage().to_dict(),
    )
