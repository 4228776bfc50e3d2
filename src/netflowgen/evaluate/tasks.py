"""A suite's tasks made ready: datasets ingested once, attacks injected, labelled node series
built and split between fitting and test (``splits.py``).

Datasets are ingested into OUT/data/<name> (canonical, inspectable) and read from there; an
injected task writes its datasets into its own folder, with the ground truth of every episode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netflowgen.evaluate.corpus import qualify_nodes
from netflowgen.evaluate.spec import InjectedTask, LabelledTask, SuiteSpec, TaskSpec
from netflowgen.schema import Quality
from netflowgen.series.build import build_series
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES
from netflowgen.series.spec import SeriesSpec, floor_step, parse_step

__all__ = ["SuiteData", "TaskData", "prepare_task"]


class SuiteData:
    """Datasets ingested once into OUT/data/<name> (canonical, inspectable), then read from there."""

    def __init__(self, suite: SuiteSpec, root: Path) -> None:
        self.suite, self.root = suite, root
        self.flows: dict[str, pl.DataFrame] = {}
        self.lengths: dict[str, timedelta] = {}

    def path(self, name: str) -> Path:
        from netflowgen.dataset.ingest import IngestConfig, ingest
        from netflowgen.read import ReadOptions

        out = self.root / name
        spec = self.suite.datasets[name]
        manifest = out / "netflowgen.json"
        stale = manifest.is_file() and json.loads(manifest.read_text()).get("read_options", {}).get("filter") != spec.filter
        if stale or not manifest.is_file():
            mapping = Path(spec.mapping) if spec.mapping else None
            ingest(IngestConfig([self.suite.resolve(p) for p in spec.inputs], out,
                                ReadOptions(mapping=mapping, timezone=spec.timezone, filter=spec.filter), overwrite=stale))
        return out

    def get(self, name: str) -> pl.DataFrame:
        if name not in self.flows:
            from netflowgen.dataset.manifest import scan_flows

            flows = scan_flows(self.path(name)).collect()
            # 1970 clocks are valid rows of an odd capture, not a time to split or pre-train on.
            self.flows[name] = flows.filter((pl.col("quality") & Quality.EPOCH_CLOCK) == 0)
        return self.flows[name]

    def attack_length(self, path: str) -> timedelta:
        """How long an attack capture lasts, first start to last end."""
        if path not in self.lengths:
            from netflowgen.dataset.manifest import scan_flows

            lo, hi = scan_flows(self.suite.resolve(path)).select(pl.col("ts_start").min(), pl.col("ts_end").max()).collect().row(0)
            self.lengths[path] = hi - lo
        return self.lengths[path]

    def coverage(self, name: str) -> Any:
        """What the dataset's inputs observed (a Coverage): silent steps outside it are missing."""
        from netflowgen.dataset.coverage import dataset_coverage

        return dataset_coverage(self.path(name))

    def prefixes(self, name: str) -> tuple[str, ...]:
        return DEFAULT_LOCAL_PREFIXES + self.suite.datasets[name].prefixes


def _cut(flows: pl.DataFrame, fraction: float, step: timedelta) -> datetime:
    lo, hi = flows["ts_start"].min(), flows["ts_start"].max()
    return floor_step(lo + (hi - lo) * fraction, step)  # type: ignore[operator]


def _busiest_local(flows: pl.DataFrame, prefixes: tuple[str, ...]) -> str:
    from netflowgen.series.nodes import is_local

    both = pl.concat([flows.select(pl.col("src_ip").alias("ip")), flows.select(pl.col("dst_ip").alias("ip"))])
    local = both.filter(is_local(pl.col("ip"), prefixes)).group_by("ip").len().sort(["len", "ip"], descending=[True, False])
    if local.height == 0:
        raise ValueError("no local node in the background; give its prefix in the dataset's prefixes")
    return str(local["ip"][0])


@dataclass
class TaskData:
    """A task made ready: its labelled series (with a dataset column) and its split."""

    spec: TaskSpec
    series: pl.DataFrame
    split: Any  # splits.Split
    step: timedelta
    injections: pl.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def attack_classes(self) -> tuple[str, ...]:
        """The classes that are attacks in this task (for injections: the attack types)."""
        if isinstance(self.spec, LabelledTask):
            return self.spec.attack
        types = [_attack_type(a) for a in self.spec.captures]
        return tuple(dict.fromkeys(types))


def prepare_task(task: TaskSpec, data: SuiteData, work: Path, progress: Callable[[str], None]) -> TaskData:
    from netflowgen.evaluate.splits import Split

    step = parse_step(task.step)
    if isinstance(task, LabelledTask):
        flows = data.get(task.dataset)
        cut = _cut(flows, task.fit_fraction, step)
        cfg = SeriesSpec(step=step, local_prefixes=data.prefixes(task.dataset), attack=task.attack)
        series = qualify_nodes(build_series(flows.lazy(), cfg, data.coverage(task.dataset)), task.dataset).with_columns(
            pl.lit(task.dataset).alias("dataset"))
        test_nodes: frozenset[str] = frozenset()
        if task.test_node_fraction > 0:
            # Nodes attacked in the test period and the others are drawn apart, so that the test
            # part holds attacks at unseen nodes and the rest keeps some for fitting.
            rng = np.random.default_rng(task.split_seed)
            attacked = series.group_by("node").agg((pl.col("attack") & (pl.col("step") >= cut)).any().alias("attack")).sort("node")
            picked = []
            for flag in (True, False):
                nodes = attacked.filter(pl.col("attack") == flag)["node"].to_list()
                k = int(round(len(nodes) * task.test_node_fraction)) if len(nodes) > 1 else len(nodes) * int(flag)
                picked += [nodes[i] for i in rng.choice(len(nodes), size=k, replace=False)] if k else []
            test_nodes = frozenset(picked)
        split = Split({task.dataset: cut}, test_nodes=test_nodes, test_only=tuple(a.lower() for a in task.test_only))
        return TaskData(task, series, split, step)
    if task.victims or task.victims_by_background:
        return _prepare_inject_many(task, data, work, step, progress)
    return _prepare_inject(task, data, work, step, progress)


def _attack_type(path: str) -> str:
    from netflowgen.simulate.inject import attack_type_of

    return attack_type_of(path)


def _prepare_inject_many(task: InjectedTask, data: SuiteData, work: Path, step: timedelta, progress: Callable[[str], None]) -> TaskData:
    """Many victims per background (evaluate/victims.py): fitting victims get the training
    attack types before the cut, test victims the test types after it; injected flows stay
    inside the background's coverage."""
    from netflowgen.dataset.coverage import dataset_coverage
    from netflowgen.evaluate.splits import Split
    from netflowgen.evaluate.victims import draw_victims, episode_times
    from netflowgen.dataset.manifest import scan_flows
    from netflowgen.simulate.inject import InjectConfig, Intensity, inject

    rng = np.random.default_rng(task.split_seed)
    train_types, test_types = [_attack_type(a) for a in task.train_attacks], [_attack_type(a) for a in task.test_attacks]
    attack = tuple(dict.fromkeys(train_types + test_types))
    spacing = parse_step(task.spacing)
    intensities = tuple(Intensity.parse(x) for x in task.intensities)
    cuts, test_nodes, parts, truth, drawn = {}, set(), [], [], []
    for i, bg in enumerate(task.backgrounds):
        flows = data.get(bg)
        cut = _cut(flows, task.fit_fraction, step)
        cuts[bg] = cut
        cfg = SeriesSpec(step=step, local_prefixes=data.prefixes(bg), attack=attack)
        background = build_series(flows.lazy(), cfg, data.coverage(bg))
        n = task.victims_by_background.get(bg, task.victims)
        if isinstance(n, (list, tuple)):
            n, n_test = int(n[0]) + int(n[1]), int(n[1])
        else:
            n_test = int(round(n * task.test_victim_share))
        what = f"task {task.name}: background {bg} ({', '.join(data.suite.datasets[bg].inputs)})"
        covered = data.coverage(bg).covered_steps(step, cfg.coverage_fraction)
        per_victim = {"test": task.injections_per_victim, "fit": task.fit_injections_per_victim or task.injections_per_victim}
        victims = draw_victims(background, cut, n - n_test, n_test, task.min_active_steps, rng, what, step=step,
                               spacing=spacing, episodes=per_victim, covered=covered)
        named = qualify_nodes(pl.DataFrame({"node": [v.node for v in victims]}, schema={"node": pl.String}), bg)["node"].to_list()
        name_of = dict(zip([v.node for v in victims], named))  # the victims as the task's series names them
        lo, hi = flows["ts_start"].min(), flows["ts_end"].max()
        current = data.path(bg)
        for part, attacks, bounds in (("fit", task.train_attacks, (lo, cut)), ("test", task.test_attacks, (cut, hi))):
            mine = [v for v in victims if v.part == part]
            if not mine:
                continue
            length = max(data.attack_length(a) for a in attacks)
            k = per_victim[part]
            schedule = tuple((v.node, t) for v in mine
                             for t in episode_times(background, v.node, bounds[0], bounds[1], k, length, spacing, step, rng,
                                                    what, covered))
            progress(f"{task.name}: injecting {len(schedule)} episodes at {len(mine)} {part} victims of {bg}")
            out = work / f"{bg}-{part}"
            inject(InjectConfig(current, tuple(data.suite.resolve(a) for a in attacks), schedule=schedule,
                                intensities=intensities, seed=task.split_seed * 1000 + i * 2 + (part == "test"),
                                label=task.label, local_prefixes=data.prefixes(bg), rate_step=step, within_coverage=True,
                                translate_family=True, overwrite=True), out)
            gt = pl.read_csv(out / "injections.csv", schema_overrides={"intensity": pl.String}, try_parse_dates=True)
            levels = {v.node: v.level for v in mine}
            truth.append(gt.with_columns(pl.lit(bg).alias("dataset"), pl.lit(part).alias("part"),
                                         pl.col("victim").replace_strict(levels, default=None).alias("level"),
                                         pl.col("victim").replace(name_of)))
            current = out
        test_nodes |= {name_of[v.node] for v in victims if v.part == "test"}
        drawn += [{"dataset": bg, **v.__dict__, "node": name_of[v.node]} for v in victims]
        injected = build_series(scan_flows(current), cfg, dataset_coverage(current))
        if task.bystanders is not None:
            others = sorted(set(background["node"].unique().to_list()) - {v.node for v in victims})
            keep = {v.node for v in victims} | {others[j] for j in rng.permutation(len(others))[: task.bystanders]}
            injected = injected.filter(pl.col("node").is_in(list(keep)))
        parts.append(qualify_nodes(injected, bg).with_columns(pl.lit(bg).alias("dataset")))
    series = pl.concat(parts, how="vertical_relaxed")
    levels = pl.DataFrame(drawn)
    notes = [f"training attack types: {', '.join(train_types)}", f"test attack types: {', '.join(test_types)}",
             f"victims: {levels.filter(pl.col('part') == 'fit').height} fitting, {len(test_nodes)} test; by level: "
             + ", ".join(f"{r['part']} {r['level']} {r['len']}" for r in levels.group_by("part", "level").len().sort("part", "level").iter_rows(named=True))]
    # The test part is every node never labelled, after the cut: the test victims and every
    # bystander, whose false alerts count too. Fitting victims are labelled before the cut only.
    fitting = set(levels.filter(pl.col("part") == "fit")["node"].to_list()) if levels.height else set()
    unseen = frozenset(series["node"].unique().to_list()) - fitting
    # Types in both lists (an unseen-victims task) may be labelled in fitting: only the others are test-only.
    held_out = tuple(dict.fromkeys(t.lower() for t in test_types if t not in train_types))
    split = Split(cuts, test_nodes=unseen, test_only=held_out, notes=notes)
    return TaskData(task, series, split, step, pl.concat(truth, how="diagonal_relaxed"))


def _prepare_inject(task: InjectedTask, data: SuiteData, work: Path, step: timedelta, progress: Callable[[str], None]) -> TaskData:
    from netflowgen.evaluate.splits import Split
    from netflowgen.simulate.inject import InjectConfig, Intensity, inject

    rng = np.random.default_rng(task.split_seed)
    order = rng.permutation(len(task.backgrounds))
    test_bg = {task.backgrounds[i] for i in order[: task.test_victims]}
    train_types = [_attack_type(a) for a in task.train_attacks]
    test_types = [_attack_type(a) for a in task.test_attacks]
    attack = tuple(dict.fromkeys(train_types + test_types))
    cuts, victims, parts, truth = {}, set(), [], []
    for i, bg in enumerate(task.backgrounds):
        flows = data.get(bg)
        cut = _cut(flows, task.fit_fraction, step)
        cuts[bg] = cut
        victim = _busiest_local(flows, data.prefixes(bg))
        testing = bg in test_bg
        lo, hi = (cut, flows["ts_start"].max()) if testing else (flows["ts_start"].min(), cut)
        # Start times well inside the part: an attack lasts seconds to minutes, 15 minutes of room.
        room = timedelta(minutes=15)
        span = (hi - lo - 2 * room).total_seconds()  # type: ignore[operator]
        if span <= 0:
            raise ValueError(f"task {task.name}: the {'test' if testing else 'fitting'} part of {bg} is too short to inject into")
        times = tuple(sorted(lo + room + timedelta(seconds=float(s)) for s in rng.uniform(0, span, task.injections_per_victim)))
        attacks = tuple(data.suite.resolve(a) for a in (task.test_attacks if testing else task.train_attacks))
        out = work / f"{bg}"
        progress(f"{task.name}: injecting into {bg} ({'test' if testing else 'fitting'} part, victim {victim})")
        summary = inject(InjectConfig(data.path(bg), attacks, victims=(victim,), times=times,
                                      intensities=tuple(Intensity.parse(x) for x in task.intensities),
                                      seed=task.split_seed * 1000 + i, label=task.label,
                                      local_prefixes=data.prefixes(bg), overwrite=True), out)
        del summary
        from netflowgen.dataset.manifest import scan_flows

        injected = scan_flows(out).collect()
        cfg = SeriesSpec(step=step, local_prefixes=data.prefixes(bg), attack=attack)
        from netflowgen.dataset.coverage import dataset_coverage

        parts.append(qualify_nodes(build_series(injected.lazy(), cfg, dataset_coverage(out)), bg).with_columns(
            pl.lit(bg).alias("dataset")))
        gt = qualify_nodes(pl.read_csv(out / "injections.csv", try_parse_dates=True), bg, "victim")
        truth.append(gt.with_columns(pl.lit(bg).alias("dataset"), pl.lit("test" if testing else "fit").alias("part")))
        if testing:
            victims.add(gt["victim"][0] if gt.height else victim)
    series = pl.concat(parts, how="vertical_relaxed")
    split = Split(cuts, test_nodes=frozenset(victims), test_only=tuple(t.lower() for t in test_types),
                  notes=[f"training attack types: {', '.join(train_types)}", f"test attack types: {', '.join(test_types)}",
                         f"test victims: {', '.join(sorted(victims))}"])
    return TaskData(task, series, split, step, pl.concat(truth, how="diagonal_relaxed"))
