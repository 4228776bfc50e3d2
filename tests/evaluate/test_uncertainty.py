"""Bootstrap over victims and paired differences."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from netflowgen.evaluate.uncertainty import Bootstrap, average_precision, compare_methods


def test_average_precision_is_scikit_learns_and_weights_are_repeated_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(300) < 0.1
        s = np.round(rng.random(300) + y * rng.random(), 1)  # many ties
        assert np.isclose(average_precision(y, s), average_precision_score(y, s))
        w = rng.integers(0, 3, 300)
        assert np.isclose(average_precision(y, s, w.astype(float)), average_precision_score(np.repeat(y, w), np.repeat(s, w)))


def _task(victims: int, others: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test rows of victims (a few attack steps each) and quiet nodes."""
    rng = np.random.default_rng(seed)
    nodes = np.repeat([f"v{i}" for i in range(victims)] + [f"n{i}" for i in range(others)], steps)
    labels = np.zeros(len(nodes), bool)
    for i in range(victims):
        labels[i * steps + rng.integers(0, steps - 5) + np.arange(3)] = True
    return nodes, labels


def test_every_replicate_keeps_the_number_of_victims() -> None:
    nodes, labels = _task(victims=7, others=20, steps=40, seed=1)
    boot = Bootstrap(nodes, labels, seeds=3, replicates=200)
    names = np.unique(nodes)
    victim = np.array([n.startswith("v") for n in names])
    assert boot.victims == 7 and boot.nodes == 27
    assert (boot.node_counts[:, victim].sum(axis=1) == 7).all()
    assert (boot.node_counts[:, ~victim].sum(axis=1) == 20).all()
    assert boot.node_counts[:, victim].std() > 0  # victims are really resampled


def test_a_clearly_better_method_wins_and_noise_is_a_tie() -> None:
    nodes, labels = _task(victims=30, others=30, steps=50, seed=2)
    rng = np.random.default_rng(3)
    good = [labels * 1.0 + rng.normal(0, 0.4, len(labels)) for _ in range(3)]
    poor = [labels * 0.3 + rng.normal(0, 0.4, len(labels)) for _ in range(3)]
    same = [g + rng.normal(0, 1e-3, len(labels)) for g in good]  # the same detector, jittered
    boot = Bootstrap(nodes, labels, seeds=3, replicates=300, seed=4)
    est = boot.pr_auc(good)
    assert est.low < est.value < est.high  # type: ignore[operator]
    diff = boot.compare({"good": good, "poor": poor, "same": same}, reference="poor")
    assert diff["good"].excludes_zero and diff["good"].low > 0.1  # type: ignore[operator]
    vs_good = boot.compare({"good": good, "same": same}, reference="good")["same"]
    assert not vs_good.excludes_zero and abs(vs_good.value) < 0.02  # type: ignore[arg-type]


def test_fewer_victims_give_a_wider_interval() -> None:
    widths = []
    for victims in (5, 200):
        nodes, labels = _task(victims=victims, others=victims, steps=40, seed=5)
        rng = np.random.default_rng(6)
        scores = [labels * 0.6 + rng.normal(0, 0.4, len(labels))]
        est = Bootstrap(nodes, labels, seeds=1, replicates=300, seed=7).pr_auc(scores)
        widths.append(est.high - est.low)  # type: ignore[operator]
    assert widths[0] > 2 * widths[1]


def test_replicates_at_once_equal_each_replicate_computed_alone() -> None:
    rng = np.random.default_rng(8)
    nodes, labels = _task(victims=12, others=30, steps=60, seed=9)
    s = np.round(labels * rng.random(len(labels)) + rng.random(len(labels)), 2)  # ties
    boot = Bootstrap(nodes, labels, seeds=1, replicates=25, seed=10)
    one_by_one = [average_precision(labels, s, boot.node_counts[r][boot.index]) for r in range(25)]
    np.testing.assert_allclose(boot._replicate_ap(s), one_by_one, rtol=1e-12)


def test_compare_methods_takes_the_best_baseline_as_reference_and_says_so_in_words() -> None:
    nodes, labels = _task(victims=40, others=40, steps=40, seed=11)
    rng = np.random.default_rng(12)

    def noisy(strength: float) -> list[np.ndarray]:
        return [labels * strength + rng.normal(0, 0.4, len(labels)) for _ in range(2)]

    scores = {("flowgpt", "3ep"): noisy(1.5), ("scratch", "3ep"): noisy(0.2), ("volume", "3ep"): noisy(0.6),
              ("lightgbm", "3ep"): noisy(0.3), ("flowgpt", "1ep"): noisy(0.6), ("volume", "1ep"): noisy(0.6)}
    out = compare_methods(scores, nodes, labels, baselines=("lightgbm", "volume"), seeds=2, replicates=300)
    three = out["budgets"]["3ep"]
    assert three["reference"] == "volume"
    assert three["vs_reference"]["flowgpt"]["verdict"] == "wins"
    assert three["vs_reference"]["lightgbm"]["verdict"] == "loses"
    assert set(three["vs_scratch"]) == {"flowgpt"} and three["vs_scratch"]["flowgpt"]["verdict"] == "wins"
    assert out["budgets"]["1ep"]["vs_reference"]["flowgpt"]["verdict"] == "tie"
    assert out["victims"] == 40
