"""Relative tokens (TokenizerConfig.relative): each feature's deviation from the node's causal
running level, in symmetric bins; off by default, and then the encoding is the one before."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netflowgen.series.spec import SeriesSpec
from netflowgen.tokenize import BinRule, Tokenizer, TokenizerConfig
from netflowgen.tokenize.shards import open_tokens, write_tokens

T0 = datetime(2024, 3, 9, 22, 0, tzinfo=timezone.utc)


def golden_frame() -> pl.DataFrame:
    """Three nodes at three scales, one feature zero every fourth step (authored for this test)."""
    rng = np.random.default_rng(7)
    rows = []
    for n, scale in (("10.0.0.1", 3.0), ("10.0.0.2", 300.0), ("10.0.1.9", 30000.0)):
        for i in range(40):
            rows.append({"node": n, "group": n.rsplit(".", 1)[0] + ".0/24", "step": T0 + timedelta(minutes=i),
                         "a": int(rng.poisson(scale)), "b": int(rng.poisson(scale / 3) * (i % 4 != 0))})
    return pl.DataFrame(rows)


def digest(enc: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(enc):
        h.update(k.encode())
        h.update(str(enc[k].dtype).encode())
        h.update(str(enc[k].shape).encode())
        h.update(np.ascontiguousarray(enc[k]).tobytes())
    return h.hexdigest()


#: sha256 of ``Tokenizer.encode(golden_frame())`` computed with the tokenizer as it was before
#: relative tokens were added (commit ef920f3), per rule: relative off must not change a byte.
BEFORE = {
    "log-quantile": "1a63f2679a84f9d0b5c9e73e0d2d4e860bbc8e7e9686c9b5ccd61ed8a923c8c2",
    "log-uniform": "c356c396a99474c3e3dce9c31e711bb21ce927ba99c0224043738551b71fdf67",
    "log-quantile-tail": "ca641dac929d5a253bc4ae300396b176e0b6e61c583f04512a3307aa46f64819",
}


@pytest.mark.parametrize("rule", list(BinRule))
def test_relative_off_by_default_encodes_exactly_as_before(rule: BinRule) -> None:
    frame = golden_frame()
    cfg = TokenizerConfig(("a", "b"), 10, rule)
    assert cfg.relative is False
    tok = Tokenizer.fit(frame, cfg)
    assert tok.features == ("a", "b") and list(tok.bins) == ["a", "b"]
    assert digest(tok.encode(frame)) == BEFORE[rule.value]


def relative(frame: pl.DataFrame, rule: BinRule = BinRule.LOG_QUANTILE_TAIL, window: int = 16, n_bins: int = 10) -> Tokenizer:
    return Tokenizer.fit(frame, TokenizerConfig(("a", "b"), n_bins, rule, relative=True, relative_window=window))


def test_relative_tokens_follow_the_traffic_features_in_model_order() -> None:
    frame = golden_frame()
    tok = relative(frame)
    assert tok.features == ("a", "b", "a~rel", "b~rel")
    assert list(tok.bins) == list(tok.features)
    traffic = tok.encode(frame)["traffic"]
    assert traffic.shape == (frame.height, 4)
    # The traffic columns are those of a tokenizer without relative tokens.
    plain = Tokenizer.fit(frame, TokenizerConfig(("a", "b"), 10)).encode(frame)["traffic"]
    assert np.array_equal(traffic[:, :2], plain)
    for j, name in enumerate(tok.features):
        assert traffic[:, j].max() < tok.bins[name]
    # Every node's first row has no level to deviate from: the central bin.
    m = [len(tok.relative_cuts[f]) for f in ("a~rel", "b~rel")]
    firsts = np.flatnonzero(frame["node"].ne(frame["node"].shift(1)).fill_null(True).to_numpy())
    assert (traffic[firsts, 2] == m[0]).all() and (traffic[firsts, 3] == m[1]).all()


deviations = st.lists(st.floats(min_value=-12, max_value=12, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=60, deadline=None)
@given(train=st.lists(st.integers(0, 10**7), min_size=2, max_size=200), probe=deviations,
       n_bins=st.integers(2, 15), rule=st.sampled_from(list(BinRule)))
def test_relative_bins_are_monotonic_and_symmetric(train: list[int], probe: list[float], n_bins: int, rule: BinRule) -> None:
    n = len(train)
    frame = pl.DataFrame({"node": ["n"] * n, "group": ["g"] * n, "step": [T0 + timedelta(minutes=i) for i in range(n)],
                          "a": train, "b": train[::-1]})
    tok = relative(frame, rule, window=4, n_bins=n_bins)
    from netflowgen.tokenize.tokenizer import _deviation_bins

    cuts = np.asarray(tok.relative_cuts["a~rel"])
    m = len(cuts)
    assert tok.bins["a~rel"] == 2 * m + 1 <= n_bins
    assert np.all(np.diff(cuts) > 0) and (m == 0 or cuts[0] >= 0)
    d = np.sort(np.asarray(probe))
    bins = _deviation_bins(d, cuts).astype(int)
    assert np.all(np.diff(bins) >= 0), "a larger deviation never gets a smaller bin"
    assert np.array_equal(_deviation_bins(-d, cuts).astype(int), 2 * m - bins), "d and -d land in mirrored bins"
    assert _deviation_bins(np.zeros(1), cuts)[0] == m, "no deviation is the central bin"
    # Each bin's decoded range holds the deviations in it, and its representative too.
    low, high = tok.decode_range("a~rel", bins)
    assert np.all((low <= d) & (d <= high))
    reps = tok.decode("a~rel", np.arange(2 * m + 1))
    assert np.array_equal(_deviation_bins(reps, cuts), np.arange(2 * m + 1))


def node_series(values: dict[str, list[int]]) -> pl.DataFrame:
    rows = []
    for node, xs in values.items():
        for i, x in enumerate(xs):
            rows.append({"node": node, "group": "g", "step": T0 + timedelta(minutes=i), "a": x, "b": x // 2})
    return pl.DataFrame(rows)


def training_frame() -> pl.DataFrame:
    """Quiet and busy nodes with ordinary noise and a few 3x-100x jumps, so deviations spread."""
    rng = np.random.default_rng(3)
    values = {}
    for k, level in enumerate((20, 200, 2000, 20000, 200000)):
        xs = rng.poisson(level, 300) * np.where(rng.random(300) < 0.05, rng.choice([3, 10, 100], 300), 1)
        values[f"10.0.0.{k}"] = [int(x) for x in xs]
    return node_series(values)


def test_a_quiet_and_a_busy_nodes_tenfold_jump_share_a_relative_bin_but_not_a_level_bin() -> None:
    tok = relative(training_frame())
    quiet, busy = 1000, 1_000_000
    probe = node_series({"quiet": [quiet] * 20 + [10 * quiet], "busy": [busy] * 20 + [10 * busy]}).sort("node", "step")
    traffic = tok.encode(probe)["traffic"]
    # Rows: busy's 21 rows come first (sorted by node), then quiet's.
    jump_busy, jump_quiet = traffic[20], traffic[41]
    assert jump_quiet[2] == jump_busy[2], "the same 10x jump is the same deviation"
    assert jump_quiet[0] != jump_busy[0], "their levels differ"
    m = len(tok.relative_cuts["a~rel"])
    assert jump_quiet[2] > m, "a jump up is above the central bin"
    assert traffic[19, 2] == m and traffic[40, 2] == m, "a steady level is the central bin"


def test_changing_a_later_row_never_changes_an_earlier_rows_relative_token() -> None:
    frame = training_frame()
    tok = relative(frame, window=8)
    base = tok.encode(frame)["traffic"]
    rng = np.random.default_rng(1)
    nodes = frame["node"].to_numpy()
    for row in rng.choice(frame.height, size=10, replace=False):
        changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.col("a") * 50 + 7)
                                     .otherwise(pl.col("a")).alias("a"))
        after = tok.encode(changed)["traffic"]
        assert np.array_equal(after[:row], base[:row]), f"changing row {row} changed an earlier row"
        # The row itself and (within the window) the node's next rows may change; rows of the
        # node more than `window` rows later may not.
        later = np.flatnonzero((np.arange(frame.height) > row + 8) & (nodes == nodes[row]))
        assert np.array_equal(after[later], base[later])
        assert not np.array_equal(after[row:row + 9, 2], base[row:row + 9, 2]), "the change is seen"


def test_row_order_does_not_change_a_rows_tokens() -> None:
    frame = training_frame()
    tok = relative(frame)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    keyed = lambda f: pl.concat([f.select("node", "step"), pl.DataFrame(tok.encode(f)["traffic"])], how="horizontal")  # noqa: E731
    assert keyed(shuffled).sort("node", "step").equals(keyed(frame).sort("node", "step"))


def test_the_newest_row_encodes_alike_with_window_more_rows_of_past() -> None:
    """What live scoring and generation rely on: the last rows of a node, encoded with
    relative_window rows before them, get exactly the tokens of the whole series."""
    frame = training_frame().sort("node", "step")
    w, keep = 8, 12
    tok = relative(frame, window=w)
    whole = tok.encode(frame)["traffic"]
    tail = frame.group_by("node", maintain_order=True).tail(keep + w)
    part = tok.encode(tail)["traffic"]
    is_kept = tail.with_columns(k=pl.int_range(pl.len()).reverse().over("node") < keep)["k"].to_numpy()
    whole_rows = frame.with_row_index().join(tail.select("node", "step"), on=["node", "step"], how="semi")["index"].to_numpy()
    assert np.array_equal(part[is_kept], whole[whole_rows[is_kept]])
    # Without the extra rows the first kept rows read a shorter past: the rule above is needed.
    short = tok.encode(frame.group_by("node", maintain_order=True).tail(keep))["traffic"]
    assert not np.array_equal(short, whole[whole_rows[is_kept]])


def test_relative_next_equals_encoding_the_longer_frame() -> None:
    frame = training_frame().filter(pl.col("node") == "10.0.0.1").sort("step")
    tok = relative(frame, window=5)
    values = frame.select("a", "b").to_numpy().astype(np.float64)
    for t in (1, 3, 5, 40, 299):
        past, now = values[None, :t], values[None, t]
        expected = tok.encode(frame.head(t + 1))["traffic"][-1, 2:]
        assert np.array_equal(tok.relative_next(past, now)[0], expected)


def test_json_round_trip_and_files_from_before_relative_tokens(tmp_path: Path) -> None:
    tok = relative(training_frame(), window=7)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert again == tok and again.config.relative and again.config.relative_window == 7
    frame = training_frame()
    assert np.array_equal(again.encode(frame)["traffic"], tok.encode(frame)["traffic"])
    # A file written before the fields existed: no relative, relative_window, relative_cuts.
    old = Tokenizer.fit(frame, TokenizerConfig(("a", "b"))).to_dict()
    del old["config"]["relative"], old["config"]["relative_window"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = Tokenizer.load(tmp_path / "old.json")
    assert loaded.config.relative is False and loaded.features == ("a", "b")
    broken = tok.to_dict()
    del broken["relative_cuts"]
    with pytest.raises(ValueError, match="relative_cuts"):
        Tokenizer.from_dict(broken)


def test_bad_settings_and_a_tokenizer_without_relative_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="relative_window"):
        TokenizerConfig(("a",), relative=True, relative_window=0)
    with pytest.raises(ValueError, match="reserved"):
        TokenizerConfig(("a~rel",))
    plain = Tokenizer.fit(training_frame(), TokenizerConfig(("a", "b")))
    with pytest.raises(ValueError, match="without relative tokens"):
        plain.encode_relative(training_frame())


def test_token_shards_carry_the_relative_tokens(tmp_path: Path) -> None:
    frame = training_frame().with_columns(attack=pl.lit(False), labeled_flows=pl.lit(0))
    tok = relative(frame)
    tok.series = SeriesSpec(features=("a", "b"))
    manifest = write_tokens(frame, tok, tmp_path / "tok", fit=None, source="test")
    assert manifest["features"] == list(tok.features) and list(manifest["bins"]) == list(tok.features)
    _, loaded, shards = open_tokens(tmp_path / "tok")
    assert loaded == tok
    stored = np.concatenate([np.asarray(s.traffic) for s in shards])
    assert np.array_equal(stored, tok.encode(frame.sort("node", "step"))["traffic"])


def test_tokenize_relative_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from netflowgen.cli import app
    from netflowgen.series import SeriesSpec
    from netflowgen.series.write import write_series
    from tests.tokenize.test_shards import make_series

    write_series(make_series(), tmp_path / "ser", SeriesSpec(attack=("DDoS",)), ["t"])
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", "ser", "--out", "tok", "--relative", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    _, tok, _ = open_tokens(tmp_path / "tok")
    assert tok.config.relative and manifest["features"] == list(tok.features)
    assert [f for f in manifest["bins"] if f.endswith("~rel")] == [f + "~rel" for f in tok.config.features]
    # Off by default; and a given tokenizer without relative tokens is not silently used for --relative.
    assert runner.invoke(app, ["tokenize", "ser", "--out", "plain", "--json"]).exit_code == 0
    _, plain, _ = open_tokens(tmp_path / "plain")
    assert not plain.config.relative
    refused = runner.invoke(app, ["tokenize", "ser", "--out", "again", "--relative", "--tokenizer", "plain/tokenizer.json"])
    assert refused.exit_code == 1 and "fitted without relative tokens" in " ".join(refused.output.split())
