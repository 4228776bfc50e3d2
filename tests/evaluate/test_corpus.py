from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from netflowgen.evaluate.corpus import _corpus_share


def _corpus(sizes: dict[str, int]) -> pl.DataFrame:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame({"node": [n for n, k in sizes.items() for _ in range(k)],
                         "step": [t0 + timedelta(seconds=10 * i) for k in sizes.values() for i in range(k)]})


def test_a_share_keeps_whole_nodes_and_about_the_asked_rows() -> None:
    corpus = _corpus({f"n{i}": 10 + 7 * i for i in range(60)})
    part = _corpus_share(corpus, 0.1)
    kept = part["node"].unique().to_list()
    # Whole nodes: every kept node has all its rows.
    assert part.height == corpus.filter(pl.col("node").is_in(kept)).height
    # At least the share, and less than the share plus the largest node.
    largest = corpus.group_by("node").len()["len"].max()
    assert 0.1 * corpus.height <= part.height < 0.1 * corpus.height + largest
    # The draw is fixed: the same corpus gives the same nodes; a smaller share a subset of fewer rows.
    assert _corpus_share(corpus, 0.1).equals(part)
    assert _corpus_share(corpus, 0.01).height < part.height
    assert _corpus_share(corpus, 1.0) is corpus


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_a_share_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="corpus_fraction must be in"):
        _corpus_share(_corpus({"a": 3}), bad)


def test_shares_are_nested() -> None:
    # One permutation for every share: 1% of the corpus lies inside 10%, so the scale curve adds data.
    corpus = _corpus({f"n{i}": 20 for i in range(100)})
    small, large = (set(_corpus_share(corpus, f)["node"].to_list()) for f in (0.05, 0.5))
    assert small < large
    assert 5 <= len(small) <= 6 and 50 <= len(large) <= 51
