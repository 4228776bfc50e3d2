"""The pre-training corpus of a suite: every dataset's unlabelled flows before its test cut, one
run per step width, and what the run learnt, per dataset.

* Every dataset of the suite goes in, also those no task uses (the real-data suite lists every
  capture in ``../shared/data``): unlabelled volume is what pre-training is for.
* Labels are dropped; flows at or after any task's test cut of that dataset are left out, so the
  test parts stay unseen; 1970 clocks are left out (``SuiteData.get``).
* Node series zero-fill only inside each dataset's coverage.
* A private address is named ``dataset/address`` (``qualify_nodes``), here and in the tasks: the
  captures' many 192.168.1.1 are different hosts.
* Reported per dataset: flows, nodes and node-steps, and the held-out next-step cross-entropy
  (the last part of every node's series) of the model and of the persistence, node-frequency and
  seasonal-naive baselines, in mean and per feature (``evaluate/nextstep.py``).
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netflowgen.artifacts import write_json
from netflowgen.series.build import SeriesSpec, build_series

__all__ = ["corpus_series", "pretrain_for", "corpus_report", "qualify_nodes"]


def qualify_nodes(frame: pl.DataFrame, dataset: str, column: str = "node") -> pl.DataFrame:
    """``column`` with every private address (RFC 1918, ULA, link-local, benchmarking ranges)
    named ``dataset/address``: such an address names a host only inside its own network, and
    two captures' 192.168.1.1 are two hosts (merged, one could be a fitting victim in one
    capture and a test victim in another). Public addresses are left as they are."""
    import ipaddress

    names = frame[column].unique().drop_nulls().to_list()

    def private(name: str) -> bool:
        try:
            return ipaddress.ip_address(name).is_private
        except ValueError:
            return False

    rename = {n: f"{dataset}/{n}" for n in names if private(n)}
    if not rename:
        return frame
    return frame.with_columns(pl.col(column).replace(rename))


def corpus_series(step: timedelta, suite: Any, data: Any, cuts: dict[str, datetime]) -> dict[str, tuple[pl.DataFrame, int]]:
    """Per dataset: its unlabelled node series at ``step`` before its test cut, and its flow count."""
    out = {}
    for name in suite.datasets:
        flows = data.get(name)
        if name in cuts:
            flows = flows.filter(pl.col("ts_start") < cuts[name])
        if flows.height == 0:
            continue
        # Labels are dropped: pre-training is unsupervised, whatever the data carries.
        flows = flows.with_columns(pl.lit(None, pl.String).alias("label"), pl.lit(None, pl.String).alias("label_detail"))
        series = build_series(flows.lazy(), SeriesSpec(step=step, local_prefixes=data.prefixes(name)), data.coverage(name))
        out[name] = (qualify_nodes(series, name), flows.height)
    return out


def tokenizer_config(pretrain: dict[str, Any]) -> Any:
    """The TokenizerConfig a suite's [pretrain] section asks for: the bin rule and its parameters
    (``bins``, ``rule``, ``tail_from``, ``tail_share``) and relative tokens; TokenizerConfig's
    defaults for what it does not set."""
    from netflowgen.series import feature_names
    from netflowgen.tokenize import TokenizerConfig

    relative = pretrain.get("relative", False)
    if not isinstance(relative, bool):
        raise ValueError(f"[pretrain] relative is true or false, not {relative!r}")
    settings = {name: pretrain[key] for key, name in (("bins", "n_bins"), ("rule", "rule"), ("tail_from", "tail_from"),
                                                      ("tail_share", "tail_share")) if key in pretrain}
    try:
        return TokenizerConfig(tuple(feature_names()), relative=relative, **settings)
    except (ValueError, TypeError) as e:
        raise ValueError(f"[pretrain] bin settings: {e}") from e


def pretrain_for(step: timedelta, suite: Any, data: Any, cuts: dict[str, datetime], out: Path,
                 show_progress: bool) -> Path:
    """One pre-training run at ``step`` on every dataset's unlabelled flows before its test cut
    (reused when OUT holds a run made with the same [pretrain] settings, datasets and cuts)."""
    from netflowgen.tokenize import Tokenizer
    from netflowgen.tokenize.shards import write_tokens
    from netflowgen.train.loop import TrainConfig
    from netflowgen.train.pretrain import PretrainConfig, pretrain

    run = out / f"pretrain-{int(step.total_seconds())}s"
    # What made the run: a suite edited since (another size, more steps, other data) trains anew.
    key = {"pretrain": suite.pretrain,
           "datasets": {name: {"inputs": list(ds.inputs), "prefixes": list(ds.prefixes), "mapping": ds.mapping,
                               "timezone": ds.timezone, "filter": ds.filter} for name, ds in sorted(suite.datasets.items())},
           "cuts": {k: v.isoformat() for k, v in sorted(cuts.items())}}
    made_by = run / "suite_pretrain.json"
    if (run / "model.safetensors").is_file() and made_by.is_file() and _read_key(made_by) == key:
        return run
    corpus = pl.concat([series for series, _ in corpus_series(step, suite, data, cuts).values()]).sort("node", "step")
    # Two captures can hold the same address at overlapping times: keep one row per (node, step).
    corpus = corpus.unique(["node", "step"], keep="first", maintain_order=True)
    p = suite.pretrain
    rows = corpus.height
    corpus = _corpus_share(corpus, float(p.get("corpus_fraction", 1.0)))
    share = {"node_steps": corpus.height, "of": rows, "nodes": corpus["node"].n_unique()}
    # One contract for the corpus: the step, and every dataset's local prefixes (each series was
    # built with its own; the union is what a series of all of them would use).
    prefixes = tuple(dict.fromkeys(x for name in suite.datasets for x in data.prefixes(name)))
    tok = Tokenizer.fit(corpus, tokenizer_config(p), SeriesSpec(step=step, local_prefixes=prefixes))
    tokens = out / f"tokens-{int(step.total_seconds())}s"
    write_tokens(corpus, tok, tokens, fit={"by": "suite", "before_test_cuts": True},
                 source="suite pre-training corpus", overwrite=True)
    steps = int(p.get("steps", 1500))
    train = TrainConfig(steps=steps, batch_size=int(p.get("batch_size", 32)), lr=float(p.get("lr", 1e-3)),
                        warmup_steps=min(100, steps // 10), eval_every=max(steps // 3, 1), checkpoint_every=max(min(steps, 500), 1),
                        eval_batches=20, seed=0, max_seconds=float(p["minutes"]) * 60 if "minutes" in p else None)
    pretrain(PretrainConfig(tokens, p.get("size", "tiny"), int(p.get("context", 64))), train, run,
             overwrite=True, show_progress=show_progress)
    write_json(run / "suite_corpus.json", share, indent=None)
    write_json(made_by, key)
    return run


def _read_key(path: Path) -> Any:
    """What made a suite's run, or None where the file cannot be read (the run is trained anew)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _corpus_share(corpus: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """A share of the corpus for the scale curve: whole nodes (their series intact, so that the
    model still learns histories), drawn with a fixed seed until the kept node-steps reach
    ``fraction`` of the rows."""
    if not 0 < fraction <= 1:
        raise ValueError(f"pretrain.corpus_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return corpus
    sizes = corpus.group_by("node").len().sort("node")
    order = np.random.default_rng(0).permutation(sizes.height)
    cum = np.cumsum(sizes["len"].to_numpy()[order])
    keep = sizes["node"].to_numpy()[order[: int(np.searchsorted(cum, fraction * corpus.height)) + 1]]
    return corpus.filter(pl.col("node").is_in(keep.tolist()))


def corpus_report(run: Path, step: timedelta, suite: Any, data: Any, cuts: dict[str, datetime]) -> dict[str, Any]:
    """Per dataset: flows, nodes, node-steps, and held-out next-step cross-entropy of the run and
    of the baselines (mean over features, and per feature on active steps)."""
    from netflowgen.evaluate.nextstep import evaluate_next_step
    from netflowgen.tokenize.shards import open_tokens, write_tokens
    from netflowgen.train.pretrain import load_run
    from netflowgen.train.windows import TokenWindows

    model, tok, _ = load_run(run)
    val_fraction = float(json.loads((run / "train_config.json").read_text())["data"]["val_fraction"])
    report: dict[str, Any] = {}
    for name, (series, flows) in corpus_series(step, suite, data, cuts).items():
        entry: dict[str, Any] = {"flows": flows, "nodes": series["node"].n_unique(), "node_steps": series.height}
        with tempfile.TemporaryDirectory(prefix="netflowgen-corpus-") as tmp:
            write_tokens(series.sort("node", "step"), tok, Path(tmp) / "t", fit=None, source=name)
            _, _, shards = open_tokens(Path(tmp) / "t")
            windows = TokenWindows(shards, model.cfg.context, val_fraction)
            result = evaluate_next_step(model, windows, tok).to_dict()
        for subset in ("all", "active", "seasonal active rows"):
            methods = result["subsets"].get(subset, {})
            entry[subset] = {m: {"mean_cross_entropy": r["mean_cross_entropy"], "targets": r["targets"],
                                 **({"cross_entropy": r["cross_entropy"]} if subset != "all" else {})}
                             for m, r in methods.items()}
        report[name] = entry
    return report
