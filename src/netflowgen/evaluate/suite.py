"""Benchmark suites: detection tasks on real or simulated flows, every method on the same splits
and labels, several seeds, one results file and a report.

A suite is a TOML file (see ``benchmarks/suites/``)::

    name = "shared"
    data = "../../../shared/data"    # base of relative inputs, relative to this file; --data or
                                     # ${NETFLOWGEN_SHARED_DATA} (relative to the working directory) win
    seeds = [0, 1, 2]
    budgets = ["1ep", "3ep", "0.1"]  # label budgets (see netflowgen.detect.labels)
    methods = ["flowgpt", "scratch", "lightgbm", "volume", "surprise"]

    [pretrain]                       # one run per step width the tasks use
    size = "tiny"
    steps = 1500

    [finetune]
    steps = 150

    [datasets.iot23]
    inputs = ["iot23-34-1/conn.log.labeled"]
    prefixes = []                    # extra local prefixes for the node series
    mapping = ""                     # a CSV mapping (e.g. westermo); timezone = "UTC"
    filter = ""                      # only flows matching this nfdump filter, e.g. "not proto icmp"

    [[tasks]]
    name = "mirai"
    kind = "labeled"                 # the dataset's own labels
    dataset = "iot23"
    attack = ["DDoS"]
    step = "60s"
    fit_fraction = 0.6
    test_only = []                   # attack classes held out of fitting

    [[tasks]]
    name = "stopddos-tcp-to-udp"
    kind = "inject"                  # real attack captures placed onto real backgrounds
    backgrounds = ["ctu50-008", ...] # one victim each: the dataset's busiest local node
    train_attacks = ["stopddos/pkt.TCP.synflood.spoofed.pcap", ...]
    test_attacks = [...]
    test_victims = 2                 # victims whose attacks are only in the test part
    intensities = ["1x", "4x", "16x"]
    injections_per_victim = 3

The run, for every task: flows -> (injection) -> labelled node series -> split (``splits.py``);
pre-training per step width on the unlabelled flows of every dataset before its earliest test
cut; then for every budget and seed one label draw shared by every method; every method scores
every row; thresholds are calibrated on the draw's calibration windows; metrics on the test part.
Methods:

* ``flowgpt``: the default of ``netflowgen finetune``: the pre-trained backbone frozen, a linear
  head on the per-feature surprise, from small random weights held small by the L2-SP anchor;
  ``flowgpt-full``: fine-tuned in full, the head on the hidden state and the surprise started as
  the zero-label score (the mode and head of the earlier default: the ablation of what moves);
  ``flowgpt-surprise``: the surprise head without the anchor; ``flowgpt-hidden``: the paper's reading, a classification layer on the
  frozen representation; ``scratch``: the same architecture trained from random weights (full,
  on its hidden state);
* ``lightgbm``: gradient-boosted trees on the node-step features with lags, on the same labels;
* ``volume``: the operator's EWMA z-score on flows and packets (only its threshold is fitted);
* ``surprise``: the pre-trained model's zero-label anomaly score (only its threshold is fitted);
  ``surprise-node``: the same score as a z-score against the node's own recent surprise.

Every task also reports the PR-AUC of the best single feature on its test part; above 0.95 the
task is marked trivial.
"""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netflowgen.evaluate.corpus import qualify_nodes
from netflowgen.read.filter import compile_filter
from netflowgen.schema import Quality
from netflowgen.series.build import build_series
from netflowgen.series.spec import SeriesSpec, floor_step, parse_step
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES

__all__ = ["METHODS", "DatasetSpec", "SuiteSpec", "TaskSpec", "load_suite", "run_suite"]

log = logging.getLogger(__name__)

METHODS = ("flowgpt", "flowgpt-full", "flowgpt-surprise", "flowgpt-hidden", "scratch", "lightgbm", "lightgbm-relative",
           "volume", "ewma", "ewma-held", "surprise", "surprise-node")
#: What an operator would use without a pre-trained model: the paired comparisons take the best
#: of these on each budget as the reference.
BASELINES = ("lightgbm", "lightgbm-relative", "volume", "ewma", "ewma-held")
#: The fine-tuned FlowGPT methods: the FinetuneConfig fields each sets; ``flowgpt`` is
#: FinetuneConfig's defaults, what ``netflowgen finetune`` does.
TUNED: dict[str, dict[str, Any]] = {
    "flowgpt": {},
    "flowgpt-full": {"mode": "full", "head_inputs": "both", "head_init": "surprise", "anchor": 0.0},
    "flowgpt-surprise": {"mode": "probe", "head_inputs": "surprise", "anchor": 0.0},
    "flowgpt-hidden": {"mode": "probe", "head_inputs": "hidden", "anchor": 0.0},
    "scratch": {"mode": "full", "head_inputs": "hidden", "init": "scratch", "anchor": 0.0},
}
#: What a suite's [pretrain] section may set (evaluate/corpus.py reads them).
PRETRAIN_FIELDS = ("size", "steps", "batch_size", "context", "lr", "bins", "rule", "tail_from", "tail_share", "minutes",
                   "corpus_fraction", "relative")
#: FinetuneConfig fields a suite's [variants.NAME] may set beside its base method (an ablation).
VARIANT_FIELDS = ("mode", "head_inputs", "head_init", "anchor", "last_k", "window", "history", "steps", "batch_size",
                  "lr", "window_weight", "backbone_lr_scale", "node_dropout")
#: Built-in ablations: each method against the one it changes one thing of (as a suite's variants
#: against their base): the new default against the old, the anchor removed, the node-relative
#: zero-label score against the plain one.
BUILTIN_BASES = {"flowgpt": "flowgpt-full", "flowgpt-surprise": "flowgpt", "surprise-node": "surprise"}
RESULTS_NAME = "results.json"
#: Per task: every method's test scores per budget and seed (see _save_test_scores).
TEST_SCORES_NAME = "test_scores.npz"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    inputs: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    mapping: str | None = None
    timezone: str = "UTC"
    filter: str | None = None
    """nfdump filter expression (netflowgen.read.filter): only the flows it matches are ingested."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # labeled | inject
    step: str = "60s"
    attack: tuple[str, ...] = ()
    dataset: str | None = None
    fit_fraction: float = 0.6
    test_only: tuple[str, ...] = ()
    test_node_fraction: float = 0.0
    """Labelled tasks: this share of the attacked nodes (and of the others) are unseen test nodes."""
    description: str = ""
    # inject tasks
    backgrounds: tuple[str, ...] = ()
    train_attacks: tuple[str, ...] = ()
    test_attacks: tuple[str, ...] = ()
    test_victims: int = 1
    intensities: tuple[str, ...] = ("1.0",)
    injections_per_victim: int = 2
    label: str = "DDoS"
    split_seed: int = 0
    victims: int = 0
    """Inject tasks: victims per background, drawn across its activity levels and split between
    fitting and test (see ``evaluate/victims.py``); 0: one victim per background, its busiest node,
    with ``test_victims`` whole backgrounds held out for test."""
    victims_by_background: dict[str, Any] = field(default_factory=dict)
    """Per-background victim counts instead of ``victims``: a number (split by
    ``test_victim_share``) or ``[fitting, test]``."""
    test_victim_share: float = 0.5
    fit_injections_per_victim: int | None = None
    """Episodes per fitting victim (default: ``injections_per_victim``)."""
    min_active_steps: int = 20
    """A victim has at least this many steps with traffic in the part it is attacked in."""
    spacing: str = "30m"
    """Least time between two episodes at one victim."""
    bystanders: int | None = None
    """Many-victim tasks: keep this many other nodes of each background (drawn at random) beside
    the victims, whose false alerts count in the test part; None keeps every node."""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    data: Path
    datasets: dict[str, DatasetSpec]
    tasks: tuple[TaskSpec, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[str, ...] = ("1ep", "3ep", "0.1")
    methods: tuple[str, ...] = ("flowgpt", "scratch", "lightgbm", "volume", "surprise")
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False
    description: str = ""
    bootstrap: int = 1000
    """Replicates of the bootstrap over victims behind every interval."""
    corpus_report: bool = False
    """Also report each dataset's pre-training corpus and held-out next-step cross-entropy."""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named fine-tuning variants (ablations): ``base``, one of the fine-tuned FlowGPT methods,
    and the FinetuneConfig fields that differ from it; usable in ``methods``."""

    def select(self, tasks: list[str] | None = None, methods: list[str] | None = None,
               budgets: list[str] | None = None) -> SuiteSpec:
        """The same suite restricted to some tasks, methods or budgets (each checked by name)."""
        from dataclasses import replace

        from netflowgen.detect.labels import parse_budget

        picked = self
        if tasks:
            names = [t.name for t in self.tasks]
            bad = [t for t in tasks if t not in names]
            if bad:
                raise ValueError(f"suite {self.name!r} has no task {bad[0]!r}; its tasks: {', '.join(names)}")
            picked = replace(picked, tasks=tuple(t for t in self.tasks if t.name in tasks))
        if methods:
            bad = [m for m in methods if m not in METHODS and m not in self.variants]
            if bad:
                raise ValueError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}"
                                 + (f" or the suite's variants {', '.join(self.variants)}" if self.variants else ""))
            picked = replace(picked, methods=tuple(methods))
        if budgets:
            for b in budgets:
                parse_budget(b)
            picked = replace(picked, budgets=tuple(budgets))
        return picked

    def with_settings(self, pairs: list[str]) -> SuiteSpec:
        """The suite with ``section.key=value`` settings of its [pretrain] or [finetune] section
        replaced (a value is read as a TOML value, else as a string): ``pretrain.size=small``."""
        from dataclasses import replace

        sections = {"pretrain": dict(self.pretrain), "finetune": dict(self.finetune)}
        for pair in pairs:
            name, sep, text = pair.partition("=")
            section, dot, key = name.strip().partition(".")
            if not sep or not dot or section not in sections or not key:
                raise ValueError(f"not a suite setting: {pair!r} (use pretrain.KEY=VALUE or finetune.KEY=VALUE)")
            if section == "finetune" and key not in VARIANT_FIELDS:
                raise ValueError(f"finetune has no setting {key!r}; it may set {', '.join(VARIANT_FIELDS)}")
            if section == "pretrain" and key not in PRETRAIN_FIELDS:
                raise ValueError(f"pretrain has no setting {key!r}; it may set {', '.join(PRETRAIN_FIELDS)}")
            try:
                value = tomllib.loads(f"v = {text.strip()}")["v"]
            except tomllib.TOMLDecodeError:
                value = text.strip()
            sections[section][key] = value
        return replace(self, pretrain=sections["pretrain"], finetune=sections["finetune"])

    def tuned(self, method: str) -> bool:
        """Whether ``method`` is a fine-tuned FlowGPT (a built-in one or a variant)."""
        return method in TUNED or method in self.variants

    def resolve(self, path: str) -> Path:
        p = Path(os.path.expandvars(path))
        return p if p.is_absolute() else self.data / p

    def check_inputs(self) -> None:
        """Every input a task needs exists, before hours of work start: the error names the
        task (or dataset) and the file as resolved."""
        for name, ds in self.datasets.items():
            for p in ds.inputs:
                if not self.resolve(p).exists():
                    raise FileNotFoundError(f"suite {self.name!r}: dataset {name!r}: input {p!r} not found at "
                                            f"{self.resolve(p)} (relative inputs resolve against {self.data})")
        for task in self.tasks:
            for p in (*task.train_attacks, *task.test_attacks):
                if not self.resolve(p).exists():
                    raise FileNotFoundError(f"suite {self.name!r}: task {task.name!r}: attack capture {p!r} not found "
                                            f"at {self.resolve(p)} (relative inputs resolve against {self.data})")


def load_suite(path: Path, data: Path | None = None) -> SuiteSpec:
    """Read a suite file; relative inputs resolve against ``data`` (relative to the current
    directory), else $NETFLOWGEN_SHARED_DATA (likewise), else the file's own ``data``, which is
    relative to the suite file's folder, as paths in a configuration file are: the suite then
    runs the same from any working directory."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not a valid suite file: {e}") from e
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such suite file") from None
    if data is not None:
        base = data
    elif os.environ.get("NETFLOWGEN_SHARED_DATA"):
        base = Path(os.environ["NETFLOWGEN_SHARED_DATA"])
    else:
        base = path.parent / os.path.expandvars(raw.get("data", "."))
    base = base.resolve()
    datasets = {}
    for name, d in raw.get("datasets", {}).items():
        if "inputs" not in d:
            raise ValueError(f"{path}: dataset {name!r} has no inputs")
        if d.get("filter"):
            try:
                compile_filter(d["filter"])
            except ValueError as e:
                raise ValueError(f"{path}: dataset {name!r}: {e}") from None
        datasets[name] = DatasetSpec(name, tuple(d["inputs"]), tuple(d.get("prefixes", ())), d.get("mapping") or None,
                                     d.get("timezone", "UTC"), d.get("filter") or None)
    tasks = []
    known = {f.name for f in TaskSpec.__dataclass_fields__.values()}
    for i, t in enumerate(raw.get("tasks", [])):
        unknown = set(t) - known
        if unknown:
            raise ValueError(f"{path}: task {i + 1} has unknown settings {sorted(unknown)}")
        t = {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}
        task = TaskSpec(**t)
        if task.kind not in ("labeled", "inject"):
            raise ValueError(f"{path}: task {task.name!r}: kind must be labeled or inject")
        for ds in ((task.dataset,) if task.kind == "labeled" else task.backgrounds):
            if ds not in datasets:
                raise ValueError(f"{path}: task {task.name!r} names the unknown dataset {ds!r}")
        tasks.append(task)
    if not tasks:
        raise ValueError(f"{path}: a suite needs at least one [[tasks]] entry")
    unknown = set(raw.get("pretrain", {})) - set(PRETRAIN_FIELDS)
    if unknown:
        raise ValueError(f"{path}: [pretrain] has unknown settings {sorted(unknown)}; it may set {', '.join(PRETRAIN_FIELDS)}")
    unknown = set(raw.get("finetune", {})) - set(VARIANT_FIELDS)
    if unknown:
        raise ValueError(f"{path}: [finetune] has unknown settings {sorted(unknown)}; it may set {', '.join(VARIANT_FIELDS)}")
    variants = {}
    for name, v in raw.get("variants", {}).items():
        if name in METHODS:
            raise ValueError(f"{path}: variant {name!r} has the name of a built-in method")
        if v.get("base") not in TUNED:
            raise ValueError(f"{path}: variant {name!r} needs base = one of {', '.join(TUNED)}")
        unknown = set(v) - {"base", *VARIANT_FIELDS}
        if unknown:
            raise ValueError(f"{path}: variant {name!r} has unknown settings {sorted(unknown)}; "
                             f"it may set {', '.join(VARIANT_FIELDS)}")
        variants[name] = dict(v)
    methods = tuple(raw.get("methods", SuiteSpec.methods))
    bad = [m for m in methods if m not in METHODS and m not in variants]
    if bad:
        raise ValueError(f"{path}: unknown methods {bad}; choose from {', '.join(METHODS)} or a [variants] entry")
    return SuiteSpec(raw.get("name", Path(path).stem), base, datasets, tuple(tasks), tuple(raw.get("seeds", (0, 1, 2))),
                     tuple(str(b) for b in raw.get("budgets", SuiteSpec.budgets)), methods, raw.get("pretrain", {}),
                     raw.get("finetune", {}), bool(raw.get("synthetic", False)), raw.get("description", ""),
                     int(raw.get("bootstrap", 1000)), bool(raw.get("corpus_report", False)), variants)


# --- data -----------------------------------------------------------------------------------


class _Data:
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
        if self.spec.kind == "labeled":
            return self.spec.attack
        types = [_attack_type(a) for a in (*self.spec.train_attacks, *self.spec.test_attacks)]
        return tuple(dict.fromkeys(types))


def prepare_task(task: TaskSpec, data: _Data, work: Path, progress: Callable[[str], None]) -> TaskData:
    from netflowgen.evaluate.splits import Split

    step = parse_step(task.step)
    if task.kind == "labeled":
        assert task.dataset is not None
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


def _prepare_inject_many(task: TaskSpec, data: _Data, work: Path, step: timedelta, progress: Callable[[str], None]) -> TaskData:
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


def _prepare_inject(task: TaskSpec, data: _Data, work: Path, step: timedelta, progress: Callable[[str], None]) -> TaskData:
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


# --- methods -----------------------------------------------------------------------------------


@dataclass
class _Scoring:
    """What a method scores one label draw of a task with (rows in node, step order)."""

    task: TaskData
    steps: Any  # EncodedSteps of the task's series
    selection: Any  # the label draw: LabelSelection
    run: Path  # the pre-training run at the task's step
    budget: Any
    seed: int
    suite: SuiteSpec
    cache: dict[str, np.ndarray]  # scores that do not depend on the draw, per method
    test_rows: np.ndarray


def _finetuned(method: str, c: _Scoring) -> np.ndarray:
    """A fine-tuned FlowGPT (built in, or a suite's variant of one): it scores the test and
    labelled rows only (NaN elsewhere; the model is the costly part)."""
    from netflowgen.detect.finetune import FinetuneConfig, finetune

    variant = c.suite.variants.get(method, {"base": method})
    settings = {"window": 32, "history": 16, "steps": 150, "batch_size": 32, "lr": 1e-2,
                **{k: v for k, v in c.suite.finetune.items() if k in VARIANT_FIELDS}, **TUNED[variant["base"]],
                **{k: v for k, v in variant.items() if k != "base"}}
    cfg = FinetuneConfig(attack=(), budget=c.budget, seed=c.seed, **settings)
    det = finetune(c.run, c.task.series, cfg, selection=c.selection, show_progress=False, score_rows=c.test_rows)
    # finetune scored every row of this very series (sorted alike) to calibrate its threshold.
    return det.fit_scores


def _zero_label(method: str, c: _Scoring) -> np.ndarray:
    """The pre-trained model's surprise (``surprise``), or the same as a causal z-score against
    the node's own recent surprise (``surprise-node``); no label is read."""
    from netflowgen.detect.finetune import node_relative_surprise, surprise_scores
    from netflowgen.train.pretrain import load_run

    if "surprise" not in c.cache:
        model, _, _ = load_run(c.run)
        s = surprise_scores(model, c.steps)
        c.cache["surprise"] = np.where(np.isfinite(s), s, np.nanmin(s) if np.isfinite(s).any() else 0.0)
    if method == "surprise-node" and method not in c.cache:
        c.cache[method] = node_relative_surprise(c.task.series, c.cache["surprise"], c.task.step)
    return c.cache[method]


def _ewma(method: str, c: _Scoring) -> np.ndarray:
    """volume: the operator's flows and packets; ewma: the largest z over every feature;
    ewma-held: the same, its state held over holes in the data up to a day."""
    from netflowgen.detect.baselines import VolumeConfig, VolumeDetector
    from netflowgen.series.features import feature_names

    if method not in c.cache:
        features = VolumeConfig.features if method == "volume" else tuple(feature_names())
        hold = timedelta(days=1) if method == "ewma-held" else None
        scored = VolumeDetector(VolumeConfig(features=features, step=c.task.step, hold_over=hold)).score(c.task.series)
        c.cache[method] = _aligned(scored, c.steps)
    return c.cache[method]


def _lightgbm(method: str, c: _Scoring) -> np.ndarray:
    """LightGBM on lagged features (``lightgbm-relative``: with node-relative ones), trained on
    exactly the draw's labels."""
    from netflowgen.detect.baselines import GBTConfig, GBTDetector

    labelled = c.task.series.with_columns(pl.Series("_y", c.steps.labels.astype(bool)))
    gbt = GBTDetector(GBTConfig(step=c.task.step, seed=c.seed, relative=method == "lightgbm-relative"))
    gbt.fit(labelled, label_col="_y", train_rows=c.selection.train, valid_rows=c.selection.calibrate)
    return _aligned(gbt.score(c.task.series), c.steps)


#: How each method scores: the fine-tuned FlowGPT methods (and every variant of one) through
#: ``_finetuned``, the others here.
SCORERS: dict[str, Callable[[str, _Scoring], np.ndarray]] = {
    **{m: _finetuned for m in TUNED},
    "surprise": _zero_label, "surprise-node": _zero_label,
    "volume": _ewma, "ewma": _ewma, "ewma-held": _ewma,
    "lightgbm": _lightgbm, "lightgbm-relative": _lightgbm,
}


def _scores(method: str, c: _Scoring) -> np.ndarray:
    """Every row's score (rows in node, step order), for one method."""
    scorer = _finetuned if method in c.suite.variants else SCORERS.get(method)
    if scorer is None:
        raise ValueError(f"unknown method {method!r}")
    return scorer(method, c)


def _aligned(scored: pl.DataFrame, steps: Any) -> np.ndarray:
    joined = steps.keys.join(scored, on=["node", "step"], how="left", maintain_order="left")
    return joined["score"].fill_null(float("-inf")).to_numpy()


# --- the run -----------------------------------------------------------------------------------


def plan_suite(suite: SuiteSpec, out: Path, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """What the suite would evaluate, without training: per task its steps, and per part (fit,
    test) the victims, attack episodes, attack types and positive steps. Datasets and injections
    are prepared in OUT as a run would (and reused by it)."""
    from netflowgen.evaluate.metrics import episodes

    say = progress or (lambda msg: log.info(msg))
    suite.check_inputs()
    data = _Data(suite, out / "data")
    plan: dict[str, Any] = {"suite": suite.name, "tasks": {}}
    for spec in suite.tasks:
        say(f"{spec.name}: preparing ({spec.kind})")
        t = prepare_task(spec, data, out / "tasks" / spec.name, say)
        series = t.series.sort("node", "step")
        labels = series["attack"].to_numpy()
        wanted = {a.lower() for a in t.attack_classes}
        entry: dict[str, Any] = {"kind": spec.kind, "step_seconds": t.step.total_seconds(), "rows": series.height,
                                 "nodes": series["node"].n_unique()}
        for part, rows in (("fit", t.split.fit_rows(series)), ("test", t.split.test_rows(series, t.attack_classes))):
            frame = series.filter(pl.Series(rows)).with_columns(pl.Series("label", labels[rows]))
            eps = episodes(frame.select("node", "step", "label"), t.step)
            classes = frame.filter(pl.col("label")).select(pl.col("classes").explode()).to_series().drop_nulls()
            entry[part] = {"steps": int(rows.sum()), "positive_steps": int(labels[rows].sum()), "episodes": eps.height,
                           "victims": eps["node"].n_unique() if eps.height else 0,
                           "attack_types": sorted({c for c in classes.to_list() if c.lower() in wanted})}
        plan["tasks"][spec.name] = entry
    totals = {part: {k: sum(e[part][k] for e in plan["tasks"].values()) for k in ("episodes", "victims", "positive_steps")}
              for part in ("fit", "test")}
    plan["totals"] = totals
    return plan


def run_suite(suite: SuiteSpec, out: Path, *, progress: Callable[[str], None] | None = None,
              show_progress: bool = False, max_seconds: float | None = None) -> dict[str, Any]:
    """Run every task, method, budget and seed; returns (and writes to OUT/results.json) the results."""
    entered = time.perf_counter()
    from netflowgen.detect.finetune import EncodedSteps
    from netflowgen.detect.labels import parse_budget, select_labels
    from netflowgen.evaluate.metrics import (
        TRIVIAL_PR_AUC,
        best_causal_feature,
        calibrate_threshold,
        detection_metrics,
        episodes,
        summarize_seeds,
    )
    from netflowgen.evaluate.corpus import corpus_report, pretrain_for
    from netflowgen.evaluate.uncertainty import compare_methods
    from netflowgen.evaluate.splits import check_no_leak
    from netflowgen.train.pretrain import load_run

    say = progress or (lambda msg: log.info(msg))
    started = time.perf_counter()
    # Calibration parts without positives are expected with tiny budgets (the fallback is
    # documented in calibrate_threshold); one warning per method and seed would bury the progress.
    for name in ("netflowgen.evaluate.metrics", "netflowgen.detect.threshold", "netflowgen.detect.baselines"):
        logging.getLogger(name).setLevel(logging.ERROR)
    suite.check_inputs()
    out.mkdir(parents=True, exist_ok=True)
    data = _Data(suite, out / "data")
    # Wall time per stage, so that a user sees where the minutes go (printed by the CLI).
    timings: dict[str, float] = {"loading PyTorch and the models": started - entered}
    stage = time.perf_counter()
    tasks: list[TaskData] = []
    for spec in suite.tasks:
        say(f"{spec.name}: preparing ({spec.kind})")
        t = prepare_task(spec, data, out / "tasks" / spec.name, say)
        tasks.append(t)
        folder = out / "tasks" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        t.series.write_parquet(folder / "series.parquet")  # for the report's timeline
    timings["ingest, inject and node series"] = time.perf_counter() - stage
    # Pre-training per step width, before every dataset's earliest test cut.
    cuts: dict[str, datetime] = {}
    for t in tasks:
        for ds, cut in t.split.cuts.items():
            cuts[ds] = min(cuts.get(ds, cut), cut)
    runs: dict[timedelta, Path] = {}
    corpus: dict[timedelta, dict[str, Any]] = {}
    for step in sorted({t.step for t in tasks}):
        say(f"pre-training at {step.total_seconds():g} s steps")
        stage = time.perf_counter()
        runs[step] = pretrain_for(step, suite, data, cuts, out / "pretrain", show_progress)
        timings[f"pre-training at {step.total_seconds():g} s"] = time.perf_counter() - stage
        if suite.corpus_report:
            say(f"held-out next step per dataset at {step.total_seconds():g} s")
            stage = time.perf_counter()
            corpus[step] = corpus_report(runs[step], step, suite, data, cuts)
            timings[f"next-step report at {step.total_seconds():g} s"] = time.perf_counter() - stage
    results: dict[str, Any] = {"suite": suite.name, "description": suite.description, "synthetic": suite.synthetic,
                               "methods": list(suite.methods), "budgets": list(suite.budgets), "seeds": list(suite.seeds),
                               "pretrain": {f"{int(s.total_seconds())}s": {**_run_info(r), "corpus": corpus.get(s)}
                                            for s, r in runs.items()},
                               "tasks": {}}
    for t in tasks:
        stage = time.perf_counter()
        run = runs[t.step]
        _, tok, _ = load_run(run)
        series = t.series.sort("node", "step")
        t.series = series
        # The series was built with the task's attack classes: its own attack flag is the label
        # (it matches label and label_detail, the classes list holds one of them per flow).
        steps = EncodedSteps.encode(series, tok)
        fit_rows, test_rows = t.split.fit_rows(series), t.split.test_rows(series, t.attack_classes)
        labels = steps.labels.astype(bool)
        entry: dict[str, Any] = {
            "kind": t.spec.kind, "description": t.spec.description, "step_seconds": t.step.total_seconds(),
            "attack": list(t.attack_classes), "split": t.split.describe(),
            "rows": series.height, "nodes": series["node"].n_unique(),
            "fit_rows": int(fit_rows.sum()), "fit_positive": int(labels[fit_rows].sum()),
            "test_rows": int(test_rows.sum()), "test_positive": int(labels[test_rows].sum()), "runs": [], "errors": [],
        }
        frame = series.select("node", "step").with_columns(pl.Series("label", labels))
        entry["test_episodes"] = episodes(frame.filter(pl.Series(test_rows)), t.step).height
        entry["fit_episodes"] = episodes(frame.filter(pl.Series(fit_rows)), t.step).height
        if entry["test_positive"] == 0:
            entry["errors"].append("the test part holds no attack step")
        else:
            name, value = best_causal_feature(series, test_rows, labels, t.step)
            entry["best_single_feature"] = {"name": name, "pr_auc": value, "causal": True}
            entry["trivial"] = value > TRIVIAL_PR_AUC
        cache: dict[str, np.ndarray] = {}
        test_scores: dict[tuple[str, str], list[np.ndarray]] = {}
        levels = _intensity_rows(t, series) if t.injections is not None else {}
        for budget_text in suite.budgets:
            budget = parse_budget(budget_text)
            for seed in suite.seeds:
                try:
                    selection = select_labels(steps.labels, steps.bounds, budget, int(suite.finetune.get("window", 32)),
                                              seed, allowed=fit_rows, step_order=steps.step_s)
                except ValueError as e:
                    entry["errors"].append(f"budget {budget_text}, seed {seed}: {e}")
                    continue
                check_no_leak(series, t.split, selection.train | selection.calibrate, test_rows)
                cal = selection.calibrate if labels[selection.calibrate].any() else selection.train | selection.calibrate
                for method in suite.methods:
                    if entry["test_positive"] == 0:
                        break
                    say(f"{t.spec.name}: {method}, budget {budget_text}, seed {seed}")
                    t0 = time.perf_counter()
                    try:
                        scores = _scores(method, _Scoring(t, steps, selection, run, budget, seed, suite, cache, test_rows))
                    except ValueError as e:
                        entry["errors"].append(f"{method}, budget {budget_text}, seed {seed}: {e}")
                        continue
                    threshold = calibrate_threshold(scores[cal], labels[cal])
                    test_scores.setdefault((method, budget_text), []).append(scores[test_rows])
                    frame = series.select("node", "step").with_columns(pl.Series("label", labels), pl.Series("score", scores))
                    metrics = detection_metrics(frame.filter(pl.Series(test_rows)), threshold, t.step).to_dict()
                    rec = {"method": method, "budget": budget_text, "seed": seed, "seconds": round(time.perf_counter() - t0, 2),
                           "labels": selection.describe(steps.labels), **metrics}
                    if levels:
                        rec["by_intensity"] = _by_intensity(levels, frame, test_rows, threshold, t.step)
                    entry["runs"].append(rec)
                    if seed == suite.seeds[0] and budget_text == suite.budgets[-1]:
                        _save_scores(out / "tasks" / t.spec.name / f"scores-{method}.parquet",
                                     frame.with_columns(pl.Series("test", test_rows)), threshold)
        entry["summary"] = _summarize(entry["runs"], summarize_seeds)
        if test_scores:
            say(f"{t.spec.name}: bootstrap over victims ({suite.bootstrap} replicates)")
            entry["comparisons"] = compare_methods(test_scores, series["node"].to_numpy()[test_rows], labels[test_rows],
                                                   BASELINES, len(suite.seeds), suite.bootstrap,
                                                   tuned=[m for m in suite.methods if suite.tuned(m)],
                                                   bases={**BUILTIN_BASES, **{v: d["base"] for v, d in suite.variants.items()}})
            entry["test_victims"] = entry["comparisons"]["victims"]
            _save_test_scores(out / "tasks" / t.spec.name / TEST_SCORES_NAME, test_scores, series.filter(pl.Series(test_rows)),
                              labels[test_rows])
            if levels:
                say(f"{t.spec.name}: intervals per attack intensity")
                entry["intensity_comparisons"] = _intensity_intervals(levels, series, test_rows, labels, test_scores, suite, t.step)
        results["tasks"][t.spec.name] = entry
        timings[f"{t.spec.name}: every method, budget and seed"] = time.perf_counter() - stage
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            say(f"time limit of {max_seconds:g} s reached; later tasks skipped")
            break
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["timings"] = {k: round(v, 1) for k, v in timings.items()}
    _write_json(out / RESULTS_NAME, results)
    return results


def _run_info(run: Path) -> dict[str, Any]:
    from netflowgen.artifacts import read_manifest

    m = read_manifest(run)
    share = run / "suite_corpus.json"  # the node-steps trained on, of the corpus (pretrain.corpus_fraction)
    return {"path": str(run), "size": m.get("size"), "steps": m.get("steps"), "parameters": m.get("parameters"),
            "final": m.get("final"), **({"corpus_share": json.loads(share.read_text())} if share.is_file() else {})}


def _intensity_rows(t: TaskData, series: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per attack intensity of the test part's injections: the rows (of ``series``) inside them."""
    gt = t.injections.filter(pl.col("part") == "test")  # type: ignore[union-attr]
    intensity_col = "intensity" if "intensity" in gt.columns else gt.columns[0]
    out = {}
    for value in gt[intensity_col].unique().sort().to_list():
        hit = pl.lit(False)
        for row in gt.filter(pl.col(intensity_col) == value).iter_rows(named=True):
            start = floor_step(datetime.fromisoformat(row["start"]) if isinstance(row["start"], str) else row["start"], t.step)
            end = datetime.fromisoformat(row["end"]) if isinstance(row["end"], str) else row["end"]
            hit = hit | ((pl.col("node") == row["victim"]) & (pl.col("step") >= start) & (pl.col("step") <= end))
        out[str(value)] = series.select(hit.alias("hit")).to_series().to_numpy()
    return out


def _by_intensity(levels: dict[str, np.ndarray], frame: pl.DataFrame, test_rows: np.ndarray, threshold: float,
                  step: timedelta) -> dict[str, Any]:
    """Metrics per attack intensity: the positives of that intensity's injections against every
    negative of the test part."""
    from netflowgen.evaluate.metrics import detection_metrics

    out = {}
    labels = frame["label"].to_numpy()
    for value, hit in levels.items():
        rows = test_rows & (~labels | hit)
        if not (labels & rows).any():
            continue
        out[value] = detection_metrics(frame.filter(pl.Series(rows)), threshold, step).to_dict()
    return out


def _intensity_intervals(levels: dict[str, np.ndarray], series: pl.DataFrame, test_rows: np.ndarray, labels: np.ndarray,
                         test_scores: dict[tuple[str, str], list[np.ndarray]], suite: SuiteSpec, step: timedelta) -> dict[str, Any]:
    """Per intensity: every method's PR-AUC with its interval over victims, the paired differences
    (as for the whole test part), and the best single causal feature on those rows (how hard the
    intensity is: near 1 a threshold on one feature finds it)."""
    from netflowgen.evaluate.metrics import best_causal_feature
    from netflowgen.evaluate.uncertainty import compare_methods

    out: dict[str, Any] = {}
    nodes = series["node"].to_numpy()[test_rows]
    for value, hit in levels.items():
        rows = test_rows & (~labels | hit)
        sub = rows[test_rows]  # the same rows, as a mask over the test part
        if not labels[rows].any():
            continue
        scores = {k: [a[sub] for a in v] for k, v in test_scores.items()}
        entry = compare_methods(scores, nodes[sub], labels[test_rows][sub], BASELINES, len(suite.seeds), suite.bootstrap,
                                tuned=[m for m in suite.methods if suite.tuned(m)],
                                bases={**BUILTIN_BASES, **{v: d["base"] for v, d in suite.variants.items()}})
        name, best = best_causal_feature(series, rows, labels, step)
        entry["best_single_feature"] = {"name": name, "pr_auc": best, "causal": True}
        entry["positive_steps"] = int(labels[rows].sum())
        out[value] = entry
    return out


def _summarize(runs: list[dict[str, Any]], summarize_seeds: Callable[..., Any]) -> list[dict[str, Any]]:
    keys = sorted({(r["method"], r["budget"]) for r in runs}, key=lambda k: (k[1], k[0]))
    rows = []
    for method, budget in keys:
        mine = [r for r in runs if r["method"] == method and r["budget"] == budget]
        stats = summarize_seeds([{k: v for k, v in r.items() if k not in ("labels", "by_intensity")} for r in mine])
        row = {"method": method, "budget": budget, "seeds": len(mine), "metrics": stats}
        intens: dict[str, list[dict[str, Any]]] = {}
        for r in mine:
            for k, v in (r.get("by_intensity") or {}).items():
                intens.setdefault(k, []).append(v)
        if intens:
            row["by_intensity"] = {k: summarize_seeds(v) for k, v in intens.items()}
        rows.append(row)
    return rows


def _save_scores(path: Path, frame: pl.DataFrame, threshold: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.with_columns((pl.col("score") >= threshold).alias("alert"), pl.lit(threshold).alias("threshold")).write_parquet(tmp)
    os.replace(tmp, path)


def _save_test_scores(path: Path, test_scores: dict[tuple[str, str], list[np.ndarray]], test: pl.DataFrame,
                      labels: np.ndarray) -> None:
    """Every method's test-row scores per budget and seed, with the rows' node, step and label, so
    that two suite runs on the same split (another pre-training, say) can be compared paired on
    the same rows and label draws (benchmarks/compare_runs.py). Plain arrays: loaded with
    allow_pickle=False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"score|{m}|{b}|{i}": a.astype(np.float32) for (m, b), per_seed in test_scores.items()
              for i, a in enumerate(per_seed)}
    arrays |= {"node": test["node"].cast(pl.String).to_numpy().astype(str),
               "step": test["step"].dt.epoch("s").to_numpy(), "label": labels.astype(bool)}
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)
