"""The suite file's typed tasks: each kind takes its own settings, and a wrong one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from netflowgen.evaluate.spec import InjectedTask, LabelledTask, load_suite

HEAD = """
name = "typed"
data = "."
[datasets.a]
inputs = ["a.csv"]
[datasets.b]
inputs = ["b.csv"]
"""

LABELLED = """
[[tasks]]
name = "own-labels"
kind = "labeled"
dataset = "a"
attack = ["DDoS", "PortScan"]
test_only = ["PortScan"]
step = "5m"
"""

INJECTED = """
[[tasks]]
name = "placed"
kind = "inject"
backgrounds = ["a", "b"]
train_attacks = ["syn.pcap"]
test_attacks = ["udp.pcap"]
victims = 3
intensities = ["1x", "4x"]
"""


def _load(tmp_path: Path, tasks: str):
    path = tmp_path / "suite.toml"
    path.write_text(HEAD + tasks)
    return load_suite(path, data=tmp_path)


def test_each_kind_reads_into_its_own_type(tmp_path: Path) -> None:
    suite = _load(tmp_path, LABELLED + INJECTED)
    labelled, injected = suite.tasks
    assert isinstance(labelled, LabelledTask) and isinstance(injected, InjectedTask)
    assert (labelled.kind, labelled.datasets, labelled.attack, labelled.test_only, labelled.step) == (
        "labeled", ("a",), ("DDoS", "PortScan"), ("PortScan",), "5m")
    assert (injected.kind, injected.datasets, injected.victims, injected.intensities) == ("inject", ("a", "b"), 3, ("1x", "4x"))
    # Defaults are the type's own: a labelled task has no victims or intensities at all.
    assert not hasattr(labelled, "victims") and not hasattr(injected, "test_only")
    assert (labelled.captures, injected.captures) == ((), ("syn.pcap", "udp.pcap"))
    assert injected.fit_fraction == labelled.fit_fraction == 0.6


@pytest.mark.parametrize(("tasks", "message"), [
    (LABELLED.replace('step = "5m"', "victims = 3"), r"task 'own-labels' \(labeled\) has unknown settings \['victims'\]; "
                                                     r"it may set attack, dataset, description"),
    (INJECTED.replace("victims = 3", 'test_only = ["x"]'), r"task 'placed' \(inject\) has unknown settings \['test_only'\]"),
    (LABELLED.replace('dataset = "a"\n', ""), r"task 'own-labels' \(labeled\): missing 1 required keyword-only argument: 'dataset'"),
    (INJECTED.replace('backgrounds = ["a", "b"]\n', ""), r"missing 1 required keyword-only argument: 'backgrounds'"),
    (LABELLED.replace('kind = "labeled"', 'kind = "labelled"'), r"task 'own-labels': kind must be labeled or inject, not 'labelled'"),
    (LABELLED.replace('dataset = "a"', 'dataset = "c"'), r"task 'own-labels' names the unknown dataset 'c'"),
    (INJECTED.replace('["a", "b"]', '["a", "z"]'), r"task 'placed' names the unknown dataset 'z'"),
    (LABELLED.replace('step = "5m"', 'step = "5 parsecs"'), r"suite.toml: .*5 parsecs"),
    (LABELLED.replace('step = "5m"', "fit_fraction = 1.5"), r"task 'own-labels': fit_fraction must lie between 0 and 1, not 1.5"),
])
def test_a_wrong_task_is_named_with_what_is_wrong(tmp_path: Path, tasks: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _load(tmp_path, tasks)


def test_the_shipped_suite_reads(tmp_path: Path) -> None:
    suite = load_suite(Path(__file__).parents[2] / "benchmarks" / "suites" / "shared.toml", data=tmp_path)
    kinds = {t.kind for t in suite.tasks}
    assert kinds == {"labeled", "inject"} and len(suite.tasks) >= 5
