"""artifacts.py: the rules every artifact writer and reader shares (atomic directories, what
--overwrite may replace, manifests that say their kind)."""

from __future__ import annotations

import errno
from collections import namedtuple
from pathlib import Path

import pytest

from netflowgen import artifacts
from netflowgen.artifacts import atomic_directory, read_manifest, write_failure, write_manifest


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_atomic_directory_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_directory(out) as tmp:
            (tmp / "part-0").write_text("half")
            assert not out.exists()  # nothing visible at the output path while it is written
            raise RuntimeError("midway")
    assert listing(tmp_path) == []  # neither the output nor the temporary folder is left
    with atomic_directory(out) as tmp:
        (tmp / "part-0").write_text("whole")
        write_manifest(tmp, "netflowgen.test", rows=1)
    assert listing(out) == ["netflowgen.json", "part-0"]
    assert read_manifest(out, "netflowgen.test")["rows"] == 1


def test_a_failed_overwrite_keeps_the_previous_artifact(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with atomic_directory(out) as tmp:
        write_manifest(tmp, "netflowgen.test", version=1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        with atomic_directory(out):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(out, overwrite=True) as tmp:
            write_manifest(tmp, "netflowgen.test", version=2)
            raise KeyboardInterrupt
    assert read_manifest(out)["version"] == 1 and listing(tmp_path) == ["art"]


def test_overwrite_replaces_only_an_artifact(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(FileExistsError, match="not a netflowgen artifact"):
        with atomic_directory(mine, overwrite=True):
            pass
    assert listing(mine) == ["holiday.jpg"]


def test_a_manifest_of_another_kind_is_refused_naming_both(tmp_path: Path) -> None:
    with atomic_directory(tmp_path / "s") as tmp:
        write_manifest(tmp, "netflowgen.series")
    with pytest.raises(ValueError, match="is a 'netflowgen.series', expected a 'netflowgen.run'"):
        read_manifest(tmp_path / "s", "netflowgen.run")
    with pytest.raises(ValueError, match="not a netflowgen artifact"):
        read_manifest(tmp_path)


Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize("free, full", [(4096, True), (10 << 20, False)])
def test_a_parquet_footer_that_did_not_fit_is_a_full_disk(monkeypatch: pytest.MonkeyPatch, free: int, full: bool) -> None:
    """Polars' Parquet writer reports a footer cut by a full disk as "Invalid thrift: transport
    error", errno lost (CI met it in the node view of `series`). It is a full disk only when the
    target disk is nearly full; with room, the same words come from a cut input file."""
    monkeypatch.setattr(artifacts.shutil, "disk_usage", lambda where: Usage(4 << 20, (4 << 20) - free, free))
    error = RuntimeError("parquet: File out of specification: Invalid thrift: transport error")
    failure = write_failure("/d/view (the node view)", error)
    assert (failure.errno == errno.ENOSPC) is full
    expected = "cannot write (No space left on device)" if full else "cannot write (RuntimeError: parquet: File out"
    assert expected in str(failure) and "/d/view (the node view)" in str(failure)


def test_pyarrows_full_disk_with_no_errno_is_a_full_disk() -> None:
    """PyArrow reports a failed write as an OSError with no errno and the code in its text."""
    failure = write_failure("/d/part.parquet", OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"))
    assert failure.errno == errno.ENOSPC and str(failure) == "[Errno 28] /d/part.parquet: cannot write (No space left on device)"
