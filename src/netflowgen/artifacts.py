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

__all__ = ["MANIFEST_NAME", "DamagedArtifact", "atomic_directory", "check_replaceable", "loading", "read_json", "write_manifest", "read_manifest"]

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


def check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is an artifact (a directory with a manifest) or an
    empty directory: --overwrite replaces what netflowgen wrote, never a user's folder or file."""
    if not out.is_symlink() and out.is_dir() and ((out / MANIFEST_NAME).is_file() or not any(out.iterdir())):
        return
    raise FileExistsError(f"{out} is not a netflowgen artifact (no {MANIFEST_NAME}); "
                          "--overwrite only replaces one: choose another --out or remove it yourself")


@contextlib.contextmanager
def atomic_directory(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block completes.

    If the block raises (or is interrupted), the temporary directory is removed and an existing
    ``out`` is left untouched.
    """
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    if out.exists():
        check_replaceable(out)
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


class DamagedArtifact(ValueError):
    """A file of an artifact that cannot be loaded as netflowgen wrote it: damaged, cut short or
    altered (bad JSON, a pickle where tensors belong, tensors of the wrong shape). A ValueError,
    so that every command reports it as one error line naming the file."""


def read_json(path: Path) -> Any:
    """A JSON file of an artifact; a missing, non-UTF-8 or malformed file is a DamagedArtifact."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DamagedArtifact(f"{path}: missing; the artifact is incomplete") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedArtifact(f"{path}: not valid JSON ({e}); the file is damaged or was altered") from e


@contextlib.contextmanager
def loading(path: Path, what: str) -> Iterator[None]:
    """Turn whatever loading a file of an artifact raises into a DamagedArtifact naming it.

    Loaders parse files they did not check field by field (a config a dataclass takes as keyword
    arguments, a state dict torch copies): a tampered file fails in there with a TypeError, a
    KeyError or a RuntimeError, which would otherwise reach the user as a traceback.
    """
    try:
        yield
    except DamagedArtifact:
        raise
    except Exception as e:  # noqa: BLE001 - reported, with its type, as the error of this file
        # torch puts what did not fit on the second line ("size mismatch for ...").
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or "no detail"
        raise DamagedArtifact(
            f"{path}: cannot load {what} ({type(e).__name__}: {detail[:300]}); the file is damaged or was "
            "altered: nothing from it was run; restore it or make it again"
        ) from e


def read_manifest(folder: Path, kind: str | None = None) -> dict[str, Any]:
    """Read an artifact's manifest, checking its kind when given."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{folder}: not a netflowgen artifact (no {MANIFEST_NAME})")
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise DamagedArtifact(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object)")
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{folder}: is a {manifest.get('kind')!r}, expected a {kind!r}")
    return manifest
