"""Artifacts on disk: directories that appear atomically and describe themselves.

Every artifact netflowgen writes (flow dataset, node series, token shards, run directory) is a
directory with a ``netflowgen.json`` manifest saying what it is. It is written under a hidden
temporary name beside its final path and renamed into place only when complete, so an
interrupted job (Ctrl-C, kill, crash) leaves no partial artifact; the next run removes the
temporary folders of dead runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "atomic_directory", "write_manifest", "read_manifest"]

MANIFEST_NAME = "netflowgen.json"


def _tmp_name(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out: Path) -> None:
    """Remove temporary folders that killed runs left beside ``out``."""
    for stale in out.parent.glob(f".{out.name}.*-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _replaceable(out: Path) -> bool:
    """Whether ``out`` is an artifact (a directory with a manifest) or an empty directory."""
    if out.is_symlink() or not out.is_dir():
        return False
    return (out / MANIFEST_NAME).is_file() or not any(out.iterdir())


@contextlib.contextmanager
def atomic_directory(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block completes.

    If the block raises (or is interrupted), the temporary directory is removed and an existing
    ``out`` is left untouched.
    """
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    if out.exists() and not _replaceable(out):
        # --overwrite replaces what netflowgen wrote, never a folder or file of the user's.
        raise FileExistsError(f"{out} is not a netflowgen artifact (no {MANIFEST_NAME}); "
                              "--overwrite only replaces one: choose another --out or remove it yourself")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = _tmp_name(out, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            old = _tmp_name(out, "old")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(folder: Path, kind: str, **content: Any) -> None:
    """Write ``netflowgen.json``: the artifact's kind, versions and whatever describes it."""
    from netflowgen import __version__

    manifest = {"kind": kind, "netflowgen_version": __version__, **content}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def read_manifest(folder: Path, kind: str | None = None) -> dict[str, Any]:
    """Read an artifact's manifest, checking its kind when given."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{folder}: not a netflowgen artifact (no {MANIFEST_NAME})")
    manifest = json.loads(path.read_text())
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{folder}: is a {manifest.get('kind')!r}, expected a {kind!r}")
    return manifest
