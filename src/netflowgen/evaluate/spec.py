"""The suite file: datasets, typed tasks, methods, budgets and seeds, read and checked before
any work starts.

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

Tasks are typed by their ``kind``: a :class:`LabelledTask` takes only the settings of the
dataset's own labels, an :class:`InjectedTask` only those of injection; a setting of the other
kind is an error that lists what the task may set.

Methods (``METHODS``; their scoring is ``suite.SCORERS``):

* ``flowgpt``: the default of ``netflowgen finetune``: the pre-trained backbone frozen, a linear
  head on the per-feature surprise, from small random weights held small by the L2-SP anchor;
  ``flowgpt-full``: fine-tuned in full, the head on the hidden state and the surprise started as
  the zero-label score (the mode and head of the earlier default: the ablation of what moves);
  ``flowgpt-surprise``: the surprise head without the anchor; ``flowgpt-hidden``: the paper's
  reading, a classification layer on the frozen representation; ``scratch``: the same architecture trained from random weights (full,
  on its hidden state);
* ``lightgbm``: gradient-boosted trees on the node-step features with lags, on the same labels;
* ``volume``: the operator's EWMA z-score on flows and packets (only its threshold is fitted);
* ``surprise``: the pre-trained model's zero-label anomaly score (only its threshold is fitted);
  ``surprise-node``: the same score as a z-score against the node's own recent surprise.

Every task also reports the PR-AUC of the best single feature on its test part; above 0.95 the
task is marked trivial.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from netflowgen.read.filter import compile_filter
from netflowgen.series.spec import parse_step

__all__ = ["BASELINES", "METHODS", "DatasetSpec", "InjectedTask", "LabelledTask", "SuiteSpec", "TaskSpec", "load_suite"]

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
                  "lr", "window_weight", "backbone_lr_scale", "node_dropout", "surprise_weights")
#: Built-in ablations: each method against the one it changes one thing of (as a suite's variants
#: against their base): the new default against the old, the anchor removed, the node-relative
#: zero-label score against the plain one.
BUILTIN_BASES = {"flowgpt": "flowgpt-full", "flowgpt-surprise": "flowgpt", "surprise-node": "surprise"}

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    inputs: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    mapping: str | None = None
    timezone: str = "UTC"
    filter: str | None = None
    """nfdump filter expression (netflowgen.read.filter): only the flows it matches are ingested."""


@dataclass(frozen=True, kw_only=True)
class _Task:
    """What every task has: a name, a step width, where time is cut between fitting and test."""

    name: str
    step: str = "60s"
    fit_fraction: float = 0.6
    """Share of each dataset's time before the cut (fitting); the rest is the test part."""
    split_seed: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a task needs a name")
        parse_step(self.step)
        if not 0 < self.fit_fraction < 1:
            raise ValueError(f"task {self.name!r}: fit_fraction must lie between 0 and 1, not {self.fit_fraction}")


@dataclass(frozen=True, kw_only=True)
class LabelledTask(_Task):
    """A dataset's own labels: its ``attack`` classes are the attacks to find."""

    kind: ClassVar[str] = "labeled"
    dataset: str
    attack: tuple[str, ...] = ()
    test_only: tuple[str, ...] = ()
    """Attack classes held out of fitting."""
    test_node_fraction: float = 0.0
    """This share of the attacked nodes (and of the others) are unseen test nodes."""

    @property
    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,)

    @property
    def captures(self) -> tuple[str, ...]:
        """Attack captures the task places: none, the labels are the dataset's own."""
        return ()


@dataclass(frozen=True, kw_only=True)
class InjectedTask(_Task):
    """Real attack captures placed onto real backgrounds (``simulate/inject.py``)."""

    kind: ClassVar[str] = "inject"
    backgrounds: tuple[str, ...]
    train_attacks: tuple[str, ...] = ()
    test_attacks: tuple[str, ...] = ()
    test_victims: int = 1
    intensities: tuple[str, ...] = ("1.0",)
    injections_per_victim: int = 2
    label: str = "DDoS"
    victims: int = 0
    """Victims per background, drawn across its activity levels and split between fitting and
    test (see ``evaluate/victims.py``); 0: one victim per background, its busiest node, with
    ``test_victims`` whole backgrounds held out for test."""
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

    @property
    def datasets(self) -> tuple[str, ...]:
        return self.backgrounds

    @property
    def captures(self) -> tuple[str, ...]:
        """Attack captures the task places, training ones first."""
        return (*self.train_attacks, *self.test_attacks)


#: A task of a suite, by its ``kind``.
TaskSpec = LabelledTask | InjectedTask
TASK_KINDS: dict[str, type[LabelledTask] | type[InjectedTask]] = {"labeled": LabelledTask, "inject": InjectedTask}


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
            for p in task.captures:
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
    tasks: list[TaskSpec] = []
    for i, t in enumerate(raw.get("tasks", [])):
        t = {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}
        what = f"{path}: task {t.get('name', i + 1)!r}"
        kind = t.pop("kind", None)
        if kind not in TASK_KINDS:
            raise ValueError(f"{what}: kind must be labeled or inject, not {kind!r}")
        cls = TASK_KINDS[kind]
        allowed = {f.name for f in fields(cls)}
        unknown = set(t) - allowed
        if unknown:
            raise ValueError(f"{what} ({kind}) has unknown settings {sorted(unknown)}; it may set {', '.join(sorted(allowed))}")
        try:
            task = cls(**t)
        except TypeError as e:  # a required setting missing
            raise ValueError(f"{what} ({kind}): {str(e).split('.__init__() ')[-1]}") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        for ds in task.datasets:
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
