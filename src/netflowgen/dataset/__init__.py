"""Flow datasets on disk: the stage between reading flows and building series.

* ``layout``: the one spelling of the directory layout, and the partition writer;
* ``manifest``: what makes a directory a dataset, and ``scan_flows``, the one way to read flows;
* ``coverage``: what the inputs observed (missing data is not zero traffic);
* ``ingest`` (and ``spark``, the same on a Spark cluster): inputs in any format to a dataset;
* ``inspect``: a summary of a dataset or of any input.
"""

from netflowgen.dataset.coverage import Coverage, coverage_of_flows, dataset_coverage
from netflowgen.dataset.manifest import DATASET_KIND, is_dataset, scan_flows

__all__ = ["DATASET_KIND", "Coverage", "coverage_of_flows", "dataset_coverage", "is_dataset", "scan_flows"]
