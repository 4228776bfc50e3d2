"""Generation: sample continuations of a node's series, and k-step forecasts with quantiles.

The model gives, for the next step, a distribution over every feature's bins. A continuation
samples a bin per feature (features are sampled independently given the history, which is how
the model factorises them), appends the step with its time fields advanced by one step width,
and repeats. Forecast quantiles for step t+k come from many sampled paths, each bin decoded to
its representative value (the median of its training values); for k = 1 this equals reading
the quantile off the predicted bin distribution.

With a relative tokenizer (``TokenizerConfig.relative``) the model also predicts each feature's
deviation token (``f~rel``). Those predictions are not sampled into the path: a generated step's
relative tokens are recomputed from its decoded values against the node's running level (the
history's last values, then the generated ones), as the tokenizer would encode that step, so the
path never holds a deviation that contradicts its values. Forecasts cover the traffic features.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl
import torch

from netflowgen.model import FlowGPT
from netflowgen.tokenize import Tokenizer

__all__ = ["Forecast", "sample_paths", "forecast_node"]


@dataclass
class Forecast:
    """Sampled futures of one node."""

    node: str
    steps: list[datetime]
    """Start of each forecast step."""
    features: list[str]
    bins: np.ndarray
    """(samples, horizon, features) sampled bins."""
    values: np.ndarray
    """(samples, horizon, features) decoded values."""

    def quantiles(self, qs: tuple[float, ...] = (0.1, 0.5, 0.9)) -> np.ndarray:
        """(len(qs), horizon, features) value quantiles over the samples."""
        return np.quantile(self.values, qs, axis=0)

    def to_frame(self, qs: tuple[float, ...] = (0.1, 0.5, 0.9)) -> pl.DataFrame:
        q = self.quantiles(qs)
        rows = []
        for t, step in enumerate(self.steps):
            for f, name in enumerate(self.features):
                rows.append({"node": self.node, "step": step, "feature": name,
                             **{f"q{int(round(x * 100)):02d}": float(q[i, t, f]) for i, x in enumerate(qs)}})
        return pl.DataFrame(rows)


def _time_fields(steps: list[datetime], tok: Tokenizer) -> torch.Tensor:
    return torch.from_numpy(tok.encode_time(pl.Series(steps, dtype=pl.Datetime("us", "UTC"))).astype(np.int64))


@torch.no_grad()
def sample_paths(model: FlowGPT, tok: Tokenizer, history: pl.DataFrame, horizon: int, samples: int = 100,
                 temperature: float = 1.0, seed: int = 0) -> Forecast:
    """Sample ``samples`` continuations of ``horizon`` steps after a node's ``history`` (its
    series rows, oldest first; at most the model's context is used), one step width of the
    tokenizer's series contract apart."""
    if history.height == 0:
        raise ValueError("no history to continue")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    nodes = history["node"].unique().to_list()
    if len(nodes) != 1:
        raise ValueError(f"history must be one node's series, got {len(nodes)} nodes")
    tok.check(history)
    ctx = model.cfg.context
    # Relative tokens read the node's previous relative_window rows: encode that many more, so
    # that the context's first rows are encoded as the whole series would encode them.
    extra = tok.config.relative_window if tok.config.relative else 0
    history = history.sort("step").tail(ctx + extra)
    enc = {k: v[-ctx:] for k, v in tok.encode(history).items()}
    feats = list(tok.config.features)
    n_f = len(feats)
    past = history.select(feats).cast(pl.Float64).to_numpy()[None].repeat(samples, 0)  # (S, T, F) values
    history = history.tail(ctx)
    width = tok.spec.step
    last = history["step"][-1]
    future = [last + width * (i + 1) for i in range(horizon)]
    gen = torch.Generator().manual_seed(seed)
    traffic = torch.from_numpy(enc["traffic"].astype(np.int64))[None].repeat(samples, 1, 1)  # (S, T, F)
    time = torch.from_numpy(enc["time"].astype(np.int64))[None].repeat(samples, 1, 1)  # (S, T, 4)
    node = torch.full((samples,), int(enc["node"][0]), dtype=torch.long)
    group = torch.full((samples,), int(enc["group"][0]), dtype=torch.long)
    future_time = _time_fields(future, tok)  # (horizon, 4)
    out_bins = []
    model.eval()
    for k in range(horizon):
        logits = model(traffic[:, -ctx:], time[:, -ctx:], node, group).logits[:, -1]  # (S, sum_bins)
        logp = model.feature_log_probs(logits / temperature)  # (S, F_tokens, max_bins)
        probs = logp.exp().reshape(-1, logp.shape[-1])
        nxt = torch.multinomial(probs, 1, generator=gen).reshape(samples, -1)  # (S, F_tokens)
        if tok.config.relative:
            now = np.stack([tok.decode(f, nxt[:, i].numpy()) for i, f in enumerate(feats)], axis=-1)  # (S, F)
            nxt[:, n_f:] = torch.from_numpy(tok.relative_next(past, now).astype(np.int64))
            past = np.concatenate([past[:, -tok.config.relative_window:], now[:, None]], axis=1)
        out_bins.append(nxt[:, :n_f])
        traffic = torch.cat([traffic, nxt[:, None]], dim=1)
        time = torch.cat([time, future_time[k][None, None].repeat(samples, 1, 1)], dim=1)
    bins = torch.stack(out_bins, dim=1).numpy()  # (S, horizon, F)
    values = np.stack([tok.decode(f, bins[..., i]) for i, f in enumerate(feats)], axis=-1)
    return Forecast(nodes[0], future, feats, bins, values)


def forecast_node(model: FlowGPT, tok: Tokenizer, series: pl.DataFrame, node: str, horizon: int,
                  until: datetime | None = None, **kw: object) -> Forecast:
    """Forecast ``node`` from its series rows before ``until`` (default: all of them)."""
    rows = series.filter(pl.col("node") == node)
    if until is not None:
        rows = rows.filter(pl.col("step") < (until if until.tzinfo else until.replace(tzinfo=timezone.utc)))
    if rows.height == 0:
        raise ValueError(f"node {node} has no series rows" + (f" before {until}" if until else ""))
    return sample_paths(model, tok, rows, horizon, **kw)  # type: ignore[arg-type]
