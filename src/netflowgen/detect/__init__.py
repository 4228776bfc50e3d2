"""Detectors: score every (node, step) of a node series; higher = more likely attack."""

from netflowgen.detect.baselines import (
    GBTConfig,
    GBTDetector,
    VolumeConfig,
    VolumeDetector,
)

__all__ = ["GBTConfig", "GBTDetector", "VolumeConfig", "VolumeDetector"]
