"""Live flow export: a NetFlow v5/v9/IPFIX collector and online per-node aggregation.

* :mod:`netflowgen.collect.netflow`: decoders (datagrams -> canonical flows, every loss counted);
* :mod:`netflowgen.collect.server`: the UDP collector behind ``netflowgen collect`` (Parquet
  files rotated atomically into a flow dataset, Prometheus metrics);
* :mod:`netflowgen.collect.export` and :mod:`netflowgen.collect.replay`: canonical flows encoded
  as v5/v9/IPFIX datagrams and sent to a collector, paced on their own clock (``netflowgen replay``);
* :mod:`netflowgen.collect.online`: :class:`OnlineSeries`, node series built step by step with the
  offline feature code.
"""

from netflowgen.collect.netflow import Decoder, ExporterStats
from netflowgen.collect.online import OnlineConfig, OnlineSeries
from netflowgen.collect.server import Collector, CollectorConfig

__all__ = ["Collector", "CollectorConfig", "Decoder", "ExporterStats", "OnlineConfig", "OnlineSeries"]
