"""The Python API: flows to alerts without the command line.

Each function is the library call behind one verb of ``netflowgen``, with what the artifacts
already hold read from them (a run knows its step width; a detector its series settings)::

    flows = read_flows("capture/")                       # canonical flows (Polars)
    series = build_series(flows, SeriesConfig(step=timedelta(minutes=1), attack=("DDoS",)))
    run = pretrain(tokenize_series(series, "tokens/"), "run/", TrainConfig(steps=300))
    surprise = run.anomaly_scores(series)                # zero labels
    det = finetune(run, series, FinetuneConfig(budget=parse_budget("3ep")), series_config=...)
    alerts = det.score(flows).filter("alert")

The README's "Python" section runs this end to end, and a test runs the README's example.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl

from netflowgen.detect.finetune import Detector, FinetuneConfig, load_detector
from netflowgen.detect.finetune import finetune as _finetune
from netflowgen.series.build import SeriesConfig, build_series, require_step
from netflowgen.train.loop import TrainConfig
from netflowgen.train.pretrain import PretrainConfig, Run, load_run
from netflowgen.train.pretrain import pretrain as _pretrain

__all__ = ["Detector", "FinetuneConfig", "PretrainConfig", "Run", "SeriesConfig", "TrainConfig", "build_series",
           "finetune", "load_detector", "load_run", "pretrain", "tokenize_series"]

PathLike = str | os.PathLike[str]


def tokenize_series(series: pl.DataFrame, out: PathLike, config: SeriesConfig | None = None, *, bins: int = 10,
             overwrite: bool = False) -> Path:
    """Fit a tokenizer on ``series`` and write its token shards to ``out`` (what `netflowgen
    tokenize` does; not named ``tokenize``, which is the package ``netflowgen.tokenize``); returns ``out``. ``config``: the series' settings (their step width is
    checked against the series' steps; default SeriesConfig())."""
    from netflowgen.series import feature_names
    from netflowgen.tokenize import Tokenizer, TokenizerConfig
    from netflowgen.tokenize.shards import write_tokens

    step = (config or SeriesConfig()).step.total_seconds()
    require_step(series, step)
    tok = Tokenizer.fit(series, TokenizerConfig(tuple(feature_names()), bins))
    write_tokens(series.sort("node", "step"), tok, Path(out), step_seconds=step, fit={"by": "python api"},
                 source="python api", overwrite=overwrite)
    return Path(out)


def pretrain(tokens: PathLike, out: PathLike, train: TrainConfig | None = None, *, size: str = "tiny",
             context: int | None = None, overwrite: bool = False, show_progress: bool = False) -> Run:
    """Pre-train FlowGPT on a tokens directory into the run directory ``out``; the loaded run."""
    _pretrain(PretrainConfig(Path(tokens), size, context), train or TrainConfig(), Path(out), overwrite=overwrite,
              show_progress=show_progress)
    return load_run(out)


def finetune(run: Run | PathLike, series: pl.DataFrame, config: FinetuneConfig | None = None, *,
             out: PathLike | None = None, fit_until: datetime | None = None, series_config: SeriesConfig | None = None,
             overwrite: bool = False, show_progress: bool = False) -> Detector:
    """Fit a detector on the run's backbone with the label budget of ``config`` (default: the
    default recipe, FinetuneConfig()), labelling only steps before ``fit_until`` when given.
    ``series_config`` (the settings ``series`` was built with) is recorded, so that the detector
    can later score flows as well as series; written to ``out`` when given."""
    from netflowgen.series.write import series_config_to_dict

    path = run.path if isinstance(run, Run) else Path(run)
    step = run.step_seconds if isinstance(run, Run) else load_run(path).step_seconds
    allowed = pl.col("step") < fit_until if fit_until is not None else None
    return _finetune(path, series, step, config or FinetuneConfig(), Path(out) if out is not None else None,
                     allowed=allowed, show_progress=show_progress, overwrite=overwrite,
                     series_config=series_config_to_dict(series_config) if series_config is not None else None)
