"""Node series: per-(node, step) traffic features built from canonical flows."""

from netflowgen.series.build import SeriesConfig, build_series, parse_step
from netflowgen.series.features import FEATURES, Feature, feature_names
from netflowgen.series.nodes import NodeMode

__all__ = ["FEATURES", "Feature", "NodeMode", "SeriesConfig", "build_series", "feature_names", "parse_step"]
