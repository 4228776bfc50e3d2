"""Plots people would rather look at than read. Written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

__all__ = ["plot_forecast"]


def _save(fig: plt.Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def plot_forecast(history: pl.DataFrame, forecast, features: list[str], path: Path, history_steps: int = 120) -> None:  # type: ignore[no-untyped-def]
    """History of a node and its forecast median with the 10-90% band, one panel per feature."""
    hist = history.sort("step").tail(history_steps)
    q = forecast.quantiles((0.1, 0.5, 0.9))
    fig, axes = plt.subplots(len(features), 1, figsize=(9, 2.2 * len(features)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], features):
        f = forecast.features.index(name)
        ax.plot(hist["step"].to_list(), hist[name].to_list(), color="black", lw=1, label="observed")
        ax.fill_between(forecast.steps, q[0, :, f], q[2, :, f], color="tab:blue", alpha=0.25, label="10-90%")
        ax.plot(forecast.steps, q[1, :, f], color="tab:blue", lw=1.5, label="median")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"node {forecast.node}: forecast of {len(forecast.steps)} steps")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    _save(fig, path)
