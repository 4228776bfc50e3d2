"""The Python API: flows to alerts without the command line.

Each function is the library call behind one verb of ``netflowgen``, with what the artifacts
already hold read from them: the series contract (``SeriesSpec``) goes in once, where the
tokenizer is fitted, and the tokenizer carries it into the run and every detector::

    flows = read_flows("capture/")                       # canonical flows (Polars)
    spec = SeriesSpec(step=timedelta(minutes=1), attack=("DDoS",))
    series = build_series(flows, spec)
    run = pretrain(tokenize_series(series, "tokens/", spec), "run/", TrainConfig(steps=300))
    surprise = run.anomaly_scores(series)                # zero labels
    det = finetune(run, series, FinetuneConfig(budget=parse_budget("3ep")))
    alerts = det.score(flows).filter("alert")

The README's "Python" section runs this end to end, and a test runs the README's example.
The first steps, on the built-in Zeek sample (run as a doctest)::

>>> from datetime import timedelta
>>> from importlib import resources
>>> import netflowgen as nfg
>>> flows = nfg.read_flows(resources.files("netflowgen") / "samples" / "zeek" / "conn.log")
>>> flows.height  # its two broken rows are rejected (a warning says so), not read
964
>>> spec = nfg.SeriesSpec(step=timedelta(minutes=5))
>>> series = nfg.build_series(flows, spec)
>>> series.height, series["node"].n_unique(), series["step"].dt.minute().unique().sort().to_list()[:3]
(75, 5, [0, 5, 10])
>>> nfg.SeriesSpec.from_dict(spec.to_dict()) == spec  # the contract every artifact carries, as JSON
True
>>> spec.check(series.with_columns(series["step"] + timedelta(minutes=1)))  # every entry point checks
Traceback (most recent call last):
...
ValueError: the series' steps are not on the 300 s grid of the model; build the series with --step 300s
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl

from netflowgen.detect.finetune import Detector, FinetuneConfig, load_detector
from netflowgen.detect.finetune import finetune as _finetune
from netflowgen.series.build import build_series
from netflowgen.series.spec import SeriesSpec
from netflowgen.tokenize.tokenizer import TokenizerConfig
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, Run, load_run
from netflowgen.train.pretrain import pretrain as _pretrain

__all__ = ["Detector", "FinetuneConfig", "PretrainConfig", "Run", "SeriesSpec", "TokenizerConfig", "TrainConfig", "build_series",
           "finetune", "load_detector", "load_run", "pretrain", "tokenize_series"]

PathLike = str | os.PathLike[str]


def tokenize_series(series: pl.DataFrame, out: PathLike, spec: SeriesSpec | None = None, *,
                    tokenizer: TokenizerConfig | None = None, overwrite: bool = False) -> Path:
    """Fit a tokenizer on ``series`` and write its token shards to ``out`` (what `netflowgen
    tokenize` does; not named ``tokenize``, which is the package ``netflowgen.tokenize``); returns
    ``out``. ``spec``: the contract ``series`` was built by (default ``SeriesSpec()``), checked
    against its rows and carried by the tokenizer into every later artifact. ``tokenizer``: the
    bin rule and its parameters (default ``TokenizerConfig``'s, on the spec's features)."""
    from netflowgen.tokenize import Tokenizer
    from netflowgen.tokenize.shards import write_tokens

    spec = spec or SeriesSpec()
    tok = Tokenizer.fit(series, tokenizer or TokenizerConfig(spec.features), spec)
    write_tokens(series.sort("node", "step"), tok, Path(out), fit={"by": "python api"}, source="python api",
                 overwrite=overwrite)
    return Path(out)


def pretrain(tokens: PathLike, out: PathLike, train: TrainConfig | None = None, *, size: str = "tiny",
             context: int | None = None, overwrite: bool = False, show_progress: bool = False) -> Run:
    """Pre-train FlowGPT on a tokens directory into the run directory ``out``; the loaded run."""
    _pretrain(PretrainConfig(Path(tokens), size, context), train or TrainConfig(), Path(out), overwrite=overwrite,
              show_progress=show_progress)
    return load_run(out)


def finetune(run: Run | PathLike, series: pl.DataFrame | PathLike, config: FinetuneConfig | None = None, *,
             out: PathLike | None = None, fit_until: datetime | None = None, overwrite: bool = False,
             show_progress: bool = False) -> Detector:
    """Fit a detector on the run's backbone with the label budget of ``config`` (default: the
    default recipe, FinetuneConfig()), labelling only steps before ``fit_until`` when given;
    written to ``out`` when given. ``series``: a node-series table built as the run's
    pre-training series was (its contract is the run's), or a series directory (its own)."""
    path = run.path if isinstance(run, Run) else Path(run)
    allowed = pl.col("step") < fit_until if fit_until is not None else None
    return _finetune(path, series if isinstance(series, pl.DataFrame) else Path(series), config or FinetuneConfig(),
                     Path(out) if out is not None else None, allowed=allowed, show_progress=show_progress,
                     overwrite=overwrite)
