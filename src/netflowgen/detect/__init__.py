"""Detectors: score every (node, step) of a node series; higher = more likely attack."""

from __future__ import annotations

from typing import Any

__all__ = ["GBTConfig", "GBTDetector", "VolumeConfig", "VolumeDetector"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the baselines pull in scikit-learn (about 2 s), and the CLI imports
    # detect.config and detect.live at every start.
    if name in __all__:
        from netflowgen.detect import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'netflowgen.detect' has no attribute {name!r}")
