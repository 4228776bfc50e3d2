"""Token shards: what training reads equals what the tokenizer encodes, and windows stay in segments."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from netflowgen.cli import app
from netflowgen.series import SeriesSpec, build_series, feature_names
from netflowgen.series.write import write_series
from netflowgen.tokenize import Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import open_tokens, write_tokens
from tests.series.test_build import flows

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def make_series() -> pl.DataFrame:
    rows = []
    for node, minutes in (("10.0.0.1", [0, 1, 2, 5, 3000]), ("10.0.0.2", [0, 4]), ("10.0.0.3", [7])):
        for m in minutes:
            rows.append({"ts_start": T0 + timedelta(minutes=m), "src_ip": node, "dst_ip": "8.8.8.8", "fwd_packets": m + 1,
                         "fwd_bytes": 60 * (m + 1), "label": "Malicious" if m == 5 else None, "label_detail": "DDoS" if m == 5 else None})
    return build_series(flows(*rows), SeriesSpec(attack=("DDoS",)))


def test_shards_hold_the_encoded_series(tmp_path: Path) -> None:
    series = make_series()
    tok = Tokenizer.fit(series, TokenizerConfig(tuple(feature_names())), SeriesSpec(attack=("DDoS",)))
    manifest = write_tokens(series, tok, tmp_path / "tok", fit=None, source="s", shard_rows=7)
    again, tok2, shards = open_tokens(tmp_path / "tok")
    assert again["rows"] == manifest["rows"] == series.height
    # 10.0.0.1 has 7 rows (minutes 0..5, then 3000), 10.0.0.2 five, 10.0.0.3 one: nodes never split.
    assert [s["rows"] for s in manifest["shards"]] == [7, 6]
    traffic = np.concatenate([np.asarray(s.traffic) for s in shards])
    assert np.array_equal(traffic, tok.encode_traffic(series.sort("node", "step")))
    assert isinstance(shards[0].traffic, np.memmap)
    # The silence of two days ends a segment; a new node starts one.
    assert shards[0].segments.tolist() == [[0, 6], [6, 1]]
    assert shards[1].segments.tolist() == [[0, 5], [5, 1]]
    assert shards[1].node.tolist() == [2] * 5 + [3]
    attack_rows = np.concatenate([np.asarray(s.attack) for s in shards]).nonzero()[0].tolist()
    assert attack_rows == [5]
    assert tok2.to_dict() == tok.to_dict()


def test_tokenize_cli_fits_on_the_early_part_only(tmp_path: Path) -> None:
    series = make_series()
    write_series(series, tmp_path / "series", SeriesSpec(attack=("DDoS",)), ["t"])
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", str(tmp_path / "series"), "--out", str(tmp_path / "tok"),
                                 "--fit-until", "2024-05-01T00:03:00", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["fit"] == {"by": "time", "until": "2024-05-01T00:03:00+00:00"}
    _, tok, shards = open_tokens(tmp_path / "tok")
    # Fitted before 00:03: 10.0.0.3 (first seen at 00:07) is unknown to it.
    assert sorted(tok.nodes) == ["10.0.0.1", "10.0.0.2"]
    assert shards[-1].node.tolist()[-1] == 0
