"""Artifacts on disk: directories that appear atomically and describe themselves.

Every artifact netflowgen writes (flow dataset, node series, token shards, run directory) is a
directory with a ``netflowgen.json`` manifest saying what it is. It is written under a hidden
temporary name beside its final path and renamed into place only when complete, so an
interrupted job (Ctrl-C, kill, crash) leaves no partial artifact. A replacement keeps the old
copy until the new one is in place (:func:`replace_directory`); the next run that writes or
reads the path puts back a copy a killed replacement had moved aside and removes the
temporary folders of dead runs (:func:`recover`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["MANIFEST_NAME", "DamagedArtifact", "Summary", "atomic_directory", "check_replaceable", "loading", "owned_prefix", "owner_alive", "read_json",
           "read_manifest", "recover", "replace_directory", "sweep_stale", "write_failure", "write_json", "write_manifest", "writing"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "netflowgen.json"


class Summary:
    """Base of a command's summary dataclass. Its manifest keeps ``to_dict(timing=False)``: no
    time taken (nor what ``_untimed`` adds), so that the same inputs give the same files."""

    _untimed: ClassVar[tuple[str, ...]] = ("seconds",)

    def to_dict(self, timing: bool = True) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        if not timing:
            for name in self._untimed:
                d.pop(name)
        return d  # type: ignore[no-any-return]


def _tmp_name(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}-{os.getpid()}"


#: The hidden names a write of ``out`` uses beside it: ``.OUT.tmp-PID`` (being written) and
#: ``.OUT.old-PID`` (the copy being replaced, kept until the new one is in place).
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (Unix seconds, to a second), from /proc; None where unknown."""
    try:
        # Fields after the command name, which is in parentheses and may hold spaces: the 20th
        # of them is field 22 of proc(5), the start time in clock ticks since boot.
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_alive(path: Path, pid: int) -> bool:
    """Whether the process ``pid`` that named ``path`` after itself may still be using it.

    The pid must exist and have started before ``path`` last changed: a pid the system has
    handed to a new process since (containers reuse small pids) does not keep a dead run's
    folder. /proc's boot time has whole seconds, hence the second of slack.
    """
    if not _alive(pid):
        return False
    started = _started_at(pid)
    if started is None:
        return True
    try:
        changed = path.lstat().st_ctime
    except FileNotFoundError:
        return False
    return started <= changed + 1.0


def owned_prefix(prefix: str) -> str:
    """A temporary folder name prefix that names this process, for :func:`sweep_stale`."""
    return f"{prefix}{os.getpid()}-"


def sweep_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove the folders ``PREFIX<pid>-*`` in ``folder`` whose process is gone (a killed run's);
    returns what was removed. Folders of live processes are kept."""
    removed = []
    for stale in folder.glob(f"{glob.escape(prefix)}*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not owner_alive(stale, int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _leftovers(out: Path) -> list[tuple[str, int, Path]]:
    """(tag, pid, path) of the hidden copies a write of exactly ``out`` left beside it."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in out.parent.iterdir():
            m = _LEFTOVER.fullmatch(entry.name)
            if m and m["name"] == out.name:
                found.append((m["tag"], int(m["pid"]), entry))
    return found


def recover(out: Path) -> bool:
    """Finish what a killed write of ``out`` left: returns True if it put a copy back.

    A replacement (:func:`replace_directory`) takes effect at the rename of the new copy into
    place. A run killed before that moment, after it had moved the old copy aside, leaves
    ``out`` missing and the complete old copy at ``.OUT.old-PID``: it is renamed back, so the
    killed command has changed nothing. Every other leftover of a dead process (a ``.tmp``
    copy, maybe incomplete; an ``.old`` copy whose replacement is in place) is removed.
    """
    dead = [(tag, path) for tag, pid, path in _leftovers(out) if not owner_alive(path, pid)]
    restored = False
    olds = sorted((p for tag, p in dead if tag == "old" and p.is_dir()), key=lambda p: p.lstat().st_ctime)
    if olds and not out.exists() and not out.is_symlink():
        os.rename(olds[-1], out)
        log.warning("%s: restored the complete copy a killed run had moved aside to %s", out, olds[-1].name)
        restored = True
    for _tag, path in dead:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)  # a file's temporary copy (score --out, weights)
    return restored


def replace_directory(new: Path, out: Path) -> None:
    """Move the complete directory ``new`` (beside ``out``) to ``out``, replacing what is there,
    so that a crash at any moment leaves one complete copy at ``out`` or for :func:`recover`:

    1. ``out`` (if there) is renamed ``.OUT.old-PID``;
    2. ``new`` is renamed ``out``: the replacement takes effect;
    3. ``.OUT.old-PID`` is removed.

    An error (or interrupt) in step 2 puts the old copy back before it is raised. Every
    replacement by renames in the package goes through here.
    """
    if not out.exists():
        os.rename(new, out)
        return
    old = _tmp_name(out, "old")
    if old.exists():
        shutil.rmtree(old)
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        if not out.exists():
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is an artifact (a directory with a manifest) or an
    empty directory: --overwrite replaces what netflowgen wrote, never a user's folder or file."""
    if not out.is_symlink() and out.is_dir() and ((out / MANIFEST_NAME).is_file() or not any(out.iterdir())):
        return
    raise FileExistsError(f"{out} is not a netflowgen artifact (no {MANIFEST_NAME}); "
                          "--overwrite only replaces one: choose another --out or remove it yourself")


@contextlib.contextmanager
def atomic_directory(out: Path, overwrite: bool = False,
                     exists: str = "choose another --out or pass --overwrite") -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block completes.

    If the block raises (or is interrupted), the temporary directory is removed and an existing
    ``out`` is left untouched. What a killed earlier write of ``out`` left is recovered first.
    ``exists`` is what the error for an existing ``out`` without ``overwrite`` tells to do.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; {exists}")
    if out.exists():
        check_replaceable(out)
    tmp = _tmp_name(out, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_failure(path: Path | str, error: BaseException) -> OSError:
    """The OSError to report for a write of ``path`` that failed with ``error``, naming the file
    and the cause: Polars reports a full disk as a ComputeError ending in "(os error 28)" or, when
    a Parquet footer did not fit, as a thrift transport error with no errno; PyArrow as an
    OSError with no errno whose text says "[errno 28]"; numpy's ``np.save`` as a short write ("N
    requested and M written"), with no errno either.

    >>> str(write_failure("/d/x.parquet", RuntimeError("underlying IO error: No space left on device (os error 28)")))
    '[Errno 28] /d/x.parquet: cannot write (No space left on device)'
    """
    text = " ".join(str(error).split())
    code = getattr(error, "errno", None)
    found = re.search(r"\(os error (\d+)\)|\[errno (\d+)\]", text)
    if code is None and found:
        code = int(found[1] or found[2])
    short = re.search(r"(\d+) requested and (\d+) written", text)
    if code is None and short and _free_below(path, int(short[1]) - int(short[2])):
        # What was left to write did not fit: the disk (or the quota) is full.
        code = errno.ENOSPC
    if code is None and "Invalid thrift: transport error" in text and _free_below(path, _FOOTER_ROOM):
        # Polars' Parquet writer reports a footer that did not fit as a thrift transport error,
        # errno lost. A reader meets the same words in a cut input file, hence the free space.
        code = errno.ENOSPC
    if code is not None:
        return OSError(code, f"{path}: cannot write ({os.strerror(code)})")
    return OSError(f"{path}: cannot write ({type(error).__name__}: {text[:300]})")


#: Free bytes under which a Parquet footer that failed to write is taken to have met a full disk.
_FOOTER_ROOM = 1 << 20


def _free_below(path: Path | str, need: int) -> bool:
    """Whether the disk that ``path`` is written to has fewer than ``need`` bytes free."""
    try:
        return shutil.disk_usage(Path(path).parent).free < need
    except OSError:
        return False


#: Errors that only a write meets: a full disk or quota, a file too large, a read-only disk.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def writing(path: Path | str, also_reads: bool = False) -> Iterator[None]:
    """Report whatever a write of ``path`` fails with (Polars, numpy, the OS) as the OSError of
    :func:`write_failure`: one error line naming the file, never a traceback. ``also_reads``:
    the block reads inputs too (a lazy query sunk to disk), so only the errors no read gives
    (:data:`_WRITE_ERRNOS`) are taken as the write's; the rest pass as they are."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure of the write, reported as one
        failure = write_failure(path, e)
        if also_reads and failure.errno not in _WRITE_ERRNOS:
            raise
        raise failure from e


def write_json(path: Path, content: Any, indent: int | None = 1) -> None:
    """Write ``content`` as JSON to ``path`` through a temporary file renamed over it: a reader,
    or the next run after a kill, sees the old file or the new one, never part of one; the
    temporary file a killed earlier write of ``path`` left is removed first."""
    recover(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(content, indent=indent, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(folder: Path, kind: str, **content: Any) -> None:
    """Write ``netflowgen.json``: the artifact's kind, versions and whatever describes it."""
    from netflowgen import __version__

    write_json(folder / MANIFEST_NAME, {"kind": kind, "netflowgen_version": __version__, **content}, indent=2)


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
    if not Path(folder).exists():
        recover(Path(folder))  # a killed replacement may have left the complete copy aside
    if not path.is_file():
        raise ValueError(f"{folder}: not a netflowgen artifact (no {MANIFEST_NAME})")
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise DamagedArtifact(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object)")
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{folder}: is a {manifest.get('kind')!r}, expected a {kind!r}")
    return manifest
