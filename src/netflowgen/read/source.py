"""Input sources: plain files, compressed files, archive members and directories.

A :class:`Source` is one logical input file. Compression is recognised from the first bytes, not
the file name, so a gzip file called ``flows.csv`` still reads. Formats that need a real path (an
external program reads it) call :meth:`Source.local_path`, which decompresses to a temporary file
only when the source is compressed.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

__all__ = ["Source", "open_sources", "compression_of", "consumed_bytes", "SNIFF_BYTES"]

SNIFF_BYTES = 64 * 1024

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
}
_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


_consumed = 0


def consumed_bytes() -> int:
    """Bytes read from input files on disk so far by :meth:`Source.open` streams (for progress)."""
    return _consumed


class _Counting(io.RawIOBase):
    """A raw file that adds what is read to the progress counter."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb", buffering=0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        global _consumed
        n = self._f.readinto(b)
        _consumed += n or 0
        return n  # type: ignore[return-value]

    def close(self) -> None:
        self._f.close()
        super().close()


def _counting(path: Path) -> BinaryIO:
    return io.BufferedReader(_Counting(path), 1 << 20)  # type: ignore[return-value]


def compression_of(head: bytes) -> str | None:
    """The compression a file's first bytes announce, or None for plain data.

    >>> compression_of(b"\\x1f\\x8b\\x08\\x00"), compression_of(b"ts,te")
    ('gzip', None)
    """
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class Source:
    """One logical input file.

    ``name`` is what rejects and ``source_file`` show (``archive.zip:member.csv`` for archive
    members); ``compression`` is None for plain files.
    """

    path: Path
    name: str
    compression: str | None = None
    member: str | None = None

    def open(self) -> BinaryIO:
        """A binary stream of the decompressed content."""
        if self.compression is None:
            return _counting(self.path)
        if self.compression == "zip":
            archive = zipfile.ZipFile(_counting(self.path))
            return archive.open(self.member or "")
        if self.compression == "gzip":
            return gzip.GzipFile(fileobj=_counting(self.path), mode="rb")  # type: ignore[return-value]
        if self.compression == "zstd":
            return zstandard.ZstdDecompressor().stream_reader(_counting(self.path), closefd=True)  # type: ignore[return-value]
        if self.compression == "bz2":
            return bz2.BZ2File(_counting(self.path), "rb")  # type: ignore[return-value]
        if self.compression == "xz":
            return lzma.LZMAFile(_counting(self.path), "rb")  # type: ignore[return-value]
        raise ValueError(f"{self.name}: unsupported compression {self.compression!r}")

    def head(self, size: int = SNIFF_BYTES) -> bytes:
        """The first ``size`` decompressed bytes (fewer if the file is shorter or corrupt)."""
        try:
            with self.open() as f:
                return f.read(size)
        except (OSError, EOFError, zipfile.BadZipFile, zstandard.ZstdError, lzma.LZMAError) as e:
            raise ValueError(f"{self.name}: cannot decompress ({self.compression}): {e}") from e

    @property
    def inner_name(self) -> str:
        """The file name without its compression suffix (for format hints)."""
        if self.member:
            return self.member
        name = self.path.name
        suffix = Path(name).suffix.lower()
        return name[: -len(suffix)] if suffix in _SUFFIXES else name

    @contextlib.contextmanager
    def local_path(self) -> Iterator[Path]:
        """A real path holding the decompressed bytes, for external programs."""
        if self.compression is None:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="netflowgen-") as tmp:
            target = Path(tmp) / Path(self.inner_name).name
            with self.open() as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            yield target


def _sources_of_file(path: Path) -> list[Source]:
    with open(path, "rb") as f:
        head = f.read(8)
    compression = compression_of(head)
    if compression == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [
                    i.filename
                    for i in archive.infolist()
                    if not i.is_dir() and not Path(i.filename).name.startswith(".")
                    and not i.filename.startswith("__MACOSX/")
                ]
        except zipfile.BadZipFile as e:
            raise ValueError(f"{path}: not a readable zip archive: {e}") from e
        return [Source(path, f"{path}:{m}", "zip", m) for m in sorted(members)]
    return [Source(path, str(path), compression)]


def open_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The logical input files behind a path: a file, each member of a zip, or every file of a
    directory (recursively, sorted, hidden files skipped).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        return [s for f in files for s in _sources_of_file(f)]
    return _sources_of_file(p)
