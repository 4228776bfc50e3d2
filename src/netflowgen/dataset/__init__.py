"""Flow datasets on disk: what their inputs observed (coverage)."""

from netflowgen.dataset.coverage import Coverage, coverage_of_flows, dataset_coverage

__all__ = ["Coverage", "coverage_of_flows", "dataset_coverage"]
