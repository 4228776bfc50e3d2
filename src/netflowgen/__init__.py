"""netflowgen: generative pre-training on network flow records, adapted with few labels to
detection tasks (DDoS first), offline on files and live on flow export.

The public surface, from flows to alerts (see ``netflowgen.api`` and the README's "Python"):

>>> import netflowgen
>>> {"read_flows", "build_series", "pretrain", "load_run", "finetune", "load_detector"} <= set(netflowgen.__all__)
True
>>> netflowgen.SeriesSpec().step
datetime.timedelta(seconds=60)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from netflowgen.dataset.ingest import IngestConfig, IngestSummary, ingest  # noqa: E402
from netflowgen.read import ReadOptions, iter_record_batches, read_flows  # noqa: E402
from netflowgen.schema import FLOW_COLUMNS, FLOW_SCHEMA  # noqa: E402

#: Loaded on first use: they pull in PyTorch, which the readers and most commands do not need.
_API = ("Detector", "FinetuneConfig", "PretrainConfig", "Run", "SeriesSpec", "TokenizerConfig", "TrainConfig", "build_series",
        "finetune", "load_detector", "load_run", "pretrain", "tokenize_series")

__all__ = [
    "FLOW_COLUMNS",
    "FLOW_SCHEMA",
    "IngestConfig",
    "IngestSummary",
    "ReadOptions",
    "__version__",
    "ingest",
    "iter_record_batches",
    "read_flows",
    *_API,
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from netflowgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'netflowgen' has no attribute {name!r}")
