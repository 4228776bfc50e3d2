"""The rename window (issue 16, defect 10): a replacement killed between its renames, or failing
there, keeps a complete copy, and the next run puts it back. Real crashes: a subprocess that
dies (os._exit) at the chosen rename, then the next command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import netflowgen.artifacts as artifacts
from netflowgen.artifacts import atomic_directory, owner_alive, recover, replace_directory, sweep_stale
from netflowgen.cli import app
from netflowgen.dataset.manifest import scan_flows
from tests.dataset.test_ingest_guards import zeek

runner = CliRunner()

#: Python run in a subprocess that dies, as a kill -9 would end it, at the NTH os.rename (or
#: shutil.rmtree) whose arguments hold NEEDLE: what a crash at that moment leaves. Then it runs
#: the CLI (or the code appended) with the arguments after KIND NEEDLE NTH.
DIES_AT = textwrap.dedent("""
    import os, shutil, sys
    kind, needle, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real_rename, real_rmtree, seen = os.rename, shutil.rmtree, [0]
    def hit(text):
        seen[0] += needle in text
        return needle in text and seen[0] == nth
    def rename(a, b, *args, **kw):
        if kind == "rename" and hit(f"{a} -> {b}"):
            os._exit(9)
        return real_rename(a, b, *args, **kw)
    def rmtree(path, *args, **kw):
        if kind == "rmtree" and hit(str(path)):
            os._exit(9)
        return real_rmtree(path, *args, **kw)
    os.rename, shutil.rmtree = rename, rmtree
    sys.argv = ["netflowgen", *sys.argv[4:]]
""")
CLI = "from netflowgen.cli import app\napp()\n"


def dies_at(kind: str, needle: str, *command: str | Path, nth: int = 1) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", DIES_AT + CLI, kind, needle, str(nth), *map(str, command)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, f"the command did not reach the crash point: {done.stderr[-2000:]}"
    return done


def ingest(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", "-q", "--json", *map(str, args)])
    return result.exit_code, result.output


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def two_inputs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a.log").write_text(zeek(30, 1))
    (tmp_path / "b.log").write_text(zeek(20, 2))
    return tmp_path / "a.log", tmp_path / "b.log"


def test_ingest_overwrite_killed_between_the_renames_keeps_the_old_dataset(two_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_inputs
    out = tmp_path / "work" / "ds"
    assert ingest(a, "--out", out)[0] == 0
    # Dies after moving the old dataset aside, before the new one is renamed into place.
    dies_at("rename", ".ds.tmp-", "ingest", "-q", b, "--out", out, "--overwrite")
    assert not out.exists(), "the crash point: neither copy at --out"
    assert [n.split("-")[0] for n in hidden(out.parent)] == [".ds.old", ".ds.tmp"]
    # A reader puts the complete old dataset back; nothing the killed run wrote is left.
    assert scan_flows(out).collect().height == 30
    assert hidden(out.parent) == []


def test_after_such_a_crash_the_next_ingest_replaces_it_cleanly(two_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_inputs
    out = tmp_path / "work" / "ds"
    assert ingest(a, "--out", out)[0] == 0
    dies_at("rename", ".ds.tmp-", "ingest", "-q", b, "--out", out, "--overwrite")
    code, output = ingest(b, "--out", out)
    assert code == 1 and "exists" in output, "the old dataset is back at --out, so it is not written over"
    code, output = ingest(b, "--out", out, "--overwrite")
    assert code == 0, output
    assert scan_flows(out).collect().height == 20 and hidden(out.parent) == []


def test_killed_after_the_new_copy_is_in_place_the_next_write_removes_the_old_one(two_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_inputs
    out = tmp_path / "work" / "ds"
    assert ingest(a, "--out", out)[0] == 0
    dies_at("rmtree", ".ds.old-", "ingest", "-q", b, "--out", out, "--overwrite")
    assert scan_flows(out).collect().height == 20, "the replacement had taken effect"
    assert [n.split("-")[0] for n in hidden(out.parent)] == [".ds.old"], "a reader leaves the rest to the next write"
    code, output = ingest(a, "--out", out, "--overwrite")
    assert code == 0, output
    assert scan_flows(out).collect().height == 30 and hidden(out.parent) == [], "the dead run's old copy is removed"


def test_an_error_at_the_second_rename_puts_the_old_copy_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "netflowgen.json").write_text('{"kind": "old"}')
    real = os.rename

    def fails_into_place(a, b):  # type: ignore[no-untyped-def]
        if Path(b) == out and ".tmp-" in Path(a).name:
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(artifacts.os, "rename", fails_into_place)
    with pytest.raises(OSError, match="No space left"), atomic_directory(out, overwrite=True) as tmp:
        (tmp / "netflowgen.json").write_text('{"kind": "new"}')
    assert json.loads((out / "netflowgen.json").read_text()) == {"kind": "old"}
    assert hidden(tmp_path) == []


def test_recover_touches_only_the_copies_of_its_own_path(tmp_path: Path) -> None:
    """`.ds.old-N` is the dataset ds's, `.ds.v2.old-N` the dataset ds.v2's: recovering ds
    must not take or delete the other one's only copy."""
    dead = dead_pid()
    (tmp_path / f".ds.v2.old-{dead}").mkdir()
    (tmp_path / f".ds.old-{dead}").mkdir()
    (tmp_path / f".ds.old-{dead}" / "netflowgen.json").write_text("{}")
    assert recover(tmp_path / "ds") is True
    assert (tmp_path / "ds" / "netflowgen.json").is_file()
    assert recover(tmp_path / "ds.v2") is True and (tmp_path / "ds.v2").is_dir()
    assert hidden(tmp_path) == []


def test_a_live_owner_keeps_its_copies_and_a_reused_pid_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / f".ds.old-{os.getpid()}"
    mine.mkdir()
    assert owner_alive(mine, os.getpid())
    assert recover(tmp_path / "ds") is False and mine.is_dir(), "this live process's copy is left alone"
    # The same pid, as if the system had given it to a process that started after the folder last changed.
    import time

    monkeypatch.setattr(artifacts, "_started_at", lambda pid: time.time() + 60)
    assert not owner_alive(mine, os.getpid())
    assert sweep_stale(tmp_path, ".ds.old-") == [mine]


def test_replace_without_an_old_copy_is_one_rename(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    replace_directory(tmp_path / "new", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


PRETRAIN = textwrap.dedent("""
    from pathlib import Path
    from tests.train.test_pretrain import small_train
    from netflowgen.train.pretrain import PretrainConfig, pretrain
    tokens, out, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    pretrain(PretrainConfig(tokens, "tiny", context=16, dropout=0.1), small_train(steps=40, checkpoint_every=10, eval_every=10),
             out, resume=how == "resume", overwrite=how == "overwrite", show_progress=False)
""")


def test_a_checkpoint_save_killed_between_its_renames_is_resumed_exactly(tmp_path: Path) -> None:
    from tests.train.test_pretrain import periodic_tokens

    tokens = periodic_tokens(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def train(out: Path, resume: bool, crash: str = "-", nth: int = 0) -> subprocess.CompletedProcess[str]:
        args = ["rename", crash, str(nth), tokens, out, "resume" if resume else "fresh"]
        return subprocess.run([sys.executable, "-c", DIES_AT + PRETRAIN, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300)

    full = train(tmp_path / "full", False)
    assert full.returncode == 0, full.stderr[-2000:]
    # The second save (step 20) dies once step 10's checkpoint has been moved aside.
    cut = train(tmp_path / "cut", False, ".checkpoint.tmp-", nth=2)
    assert cut.returncode == 9, cut.stderr[-2000:]
    assert not (tmp_path / "cut" / "checkpoint").exists()
    assert [n.split("-")[0] for n in hidden(tmp_path / "cut")] == [".checkpoint.old", ".checkpoint.tmp"]
    resumed = train(tmp_path / "cut", True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert hidden(tmp_path / "cut") == []
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "identical weights"
    metrics = lambda run: [{k: v for k, v in json.loads(x).items() if k not in ("steps_per_s", "tokens_per_s", "data_share")}  # noqa: E731
                           for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")


def _pretrain_dies(tokens: Path, out: Path, how: str, kind: str = "rename", crash: str = "-", nth: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [kind, crash, str(nth), tokens, out, how]
    return subprocess.run([sys.executable, "-c", DIES_AT + PRETRAIN, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_pretrain_killed_before_its_run_directory_is_in_place_leaves_nothing(tmp_path: Path) -> None:
    """Found by benchmarks/chaos.py: a kill between creating the run directory and writing its
    manifest left a directory that neither --resume nor --overwrite would take. The directory
    now appears whole (configs, tokenizer and manifest), by one rename."""
    from tests.train.test_pretrain import periodic_tokens

    tokens = periodic_tokens(tmp_path)
    out = tmp_path / "run"
    killed = _pretrain_dies(tokens, out, "fresh", "rename", ".run.tmp-", nth=1)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert not out.exists() and [n.split("-")[0] for n in hidden(tmp_path)] == [".run.tmp"]
    again = _pretrain_dies(tokens, out, "fresh")  # the same command, without --overwrite
    assert again.returncode == 0, again.stderr[-2000:]
    assert hidden(tmp_path) == [] and json.loads((out / "netflowgen.json").read_text())["status"] == "complete"


def test_pretrain_overwrite_killed_while_removing_the_old_run_leaves_the_new_one(tmp_path: Path) -> None:
    """The other window chaos.py found: --overwrite removed the old run in place, and a kill
    during that removal left a directory without a manifest. The old run is now moved aside
    first; a kill while removing it leaves the new run, which the next command takes."""
    from tests.train.test_pretrain import periodic_tokens

    tokens = periodic_tokens(tmp_path)
    out = tmp_path / "run"
    assert _pretrain_dies(tokens, out, "fresh").returncode == 0
    killed = _pretrain_dies(tokens, out, "overwrite", "rmtree", ".run.old-", nth=1)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert json.loads((out / "netflowgen.json").read_text())["status"] == "running"
    again = _pretrain_dies(tokens, out, "overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert hidden(tmp_path) == [] and json.loads((out / "netflowgen.json").read_text())["status"] == "complete"


def test_write_json_replaces_whole_files_and_a_damaged_suite_key_means_retrain(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """chaos.py killed `benchmark` while it wrote suite_pretrain.json in place; every rerun then
    failed on the cut JSON. JSON is now written to a temporary name and renamed, and a key that
    cannot be read is a run to train again, not an error."""
    from netflowgen.evaluate.corpus import _read_key

    path = tmp_path / "suite_pretrain.json"
    artifacts.write_json(path, {"pretrain": {"steps": 10}})
    # Interrupted after the new content is written, before it replaces the old: a write in
    # place would already have changed the file.
    monkeypatch.setattr(artifacts.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        artifacts.write_json(path, {"pretrain": {"steps": 20}})
    monkeypatch.undo()
    assert _read_key(path) == {"pretrain": {"steps": 10}} and hidden(tmp_path) == []
    path.write_text('{"pretrain": {"st')
    assert _read_key(path) is None


def test_a_file_write_removes_what_a_killed_write_of_it_left(tmp_path: Path) -> None:
    """A run killed between writing ``.f.tmp-PID`` and renaming it leaves that file inside the
    artifact (a pretrain run directory is written in place); the next write of the same file
    removes it, and leaves a live process's and another file's alone."""
    from netflowgen.artifacts import write_json
    from netflowgen.train.checkpoint import save_weights

    dead = dead_pid()
    for name in ("netflowgen.json", "model.safetensors", "other.json"):
        (tmp_path / f".{name}.tmp-{dead}").write_text("half")
    live = tmp_path / f".netflowgen.json.tmp-{os.getppid()}"  # a live process (not this one: its own name)
    live.write_text("being written")
    write_json(tmp_path / "netflowgen.json", {"kind": "x"})
    save_weights(torch.nn.Linear(2, 1), tmp_path / "model.safetensors")
    assert hidden(tmp_path) == sorted([f".other.json.tmp-{dead}", live.name])
