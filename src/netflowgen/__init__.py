"""netflowgen: generative pre-training on network flow records, adapted with few labels to
detection tasks (DDoS first), offline on files and live on flow export.

The public surface for reading flows:

>>> import netflowgen
>>> "read_flows" in netflowgen.__all__
True
"""

from __future__ import annotations

__version__ = "0.1.0"

from netflowgen.ingest import IngestConfig, IngestSummary, ingest  # noqa: E402
from netflowgen.read import ReadOptions, iter_record_batches, read_flows  # noqa: E402
from netflowgen.schema import FLOW_COLUMNS, FLOW_SCHEMA  # noqa: E402

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
]
