"""Cost of relative tokens (TokenizerConfig.relative): fit and encode time against the same
tokenizer without them, measured in the same run on the same synthetic node series (every
feature of ``netflowgen.series.feature_names()``, Poisson counts at a per-node level, 5% of steps
multiplied 3x-100x). Figures are ratios: relative on / relative off (aim: encode under 3x).

    .venv/bin/python benchmarks/relative_tokens.py [--nodes 400] [--steps 500] [--window 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from netflowgen.series import feature_names
from netflowgen.tokenize import Tokenizer, TokenizerConfig


def series(nodes: int, steps: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = nodes * steps
    level = np.repeat(10 ** rng.uniform(0, 5, nodes), steps)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    cols: dict[str, object] = {
        "node": np.repeat([f"10.0.{i // 256}.{i % 256}" for i in range(nodes)], steps),
        "group": np.repeat([f"10.0.{i // 256}.0/24" for i in range(nodes)], steps),
        "step": pl.datetime_range(t0, t0 + timedelta(minutes=steps - 1), "1m", eager=True, time_zone="UTC").to_list() * nodes,
    }
    for f in feature_names():
        jump = np.where(rng.random(n) < 0.05, rng.choice([3, 10, 100], n), 1)
        cols[f] = rng.poisson(level * rng.uniform(0.1, 2)) * jump
    return pl.DataFrame(cols)


def timed(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=400)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    frame = series(args.nodes, args.steps)
    feats = tuple(feature_names())
    off_cfg = TokenizerConfig(feats)
    on_cfg = TokenizerConfig(feats, relative=True, relative_window=args.window)
    fit_off = timed(lambda: Tokenizer.fit(frame, off_cfg), 1)
    fit_on = timed(lambda: Tokenizer.fit(frame, on_cfg), 1)
    off, on = Tokenizer.fit(frame, off_cfg), Tokenizer.fit(frame, on_cfg)
    enc_off = timed(lambda: off.encode(frame))
    enc_on = timed(lambda: on.encode(frame))
    result = {"rows": frame.height, "features": len(feats), "window": args.window,
              "fit_s_off": fit_off, "fit_s_on": fit_on, "fit_ratio": fit_on / fit_off,
              "encode_s_off": enc_off, "encode_s_on": enc_on, "encode_ratio": enc_on / enc_off,
              "rows_per_s_on": frame.height / enc_on}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{frame.height:,} rows x {len(feats)} features, window {args.window}")
    print(f"fit:    {fit_off:.2f} s off, {fit_on:.2f} s on  -> {result['fit_ratio']:.2f}x")
    print(f"encode: {enc_off:.2f} s off, {enc_on:.2f} s on  -> {result['encode_ratio']:.2f}x "
          f"({result['rows_per_s_on']:,.0f} rows/s with relative tokens)")


if __name__ == "__main__":
    main()
