"""Node series: per-(node, step) traffic features built from canonical flows."""

from netflowgen.series.build import build_series
from netflowgen.series.spec import SeriesSpec, parse_step
from netflowgen.series.features import FEATURES, Feature, feature_names
from netflowgen.series.nodes import NodeMode

__all__ = ["FEATURES", "Feature", "NodeMode", "SeriesSpec", "build_series", "feature_names", "parse_step"]
