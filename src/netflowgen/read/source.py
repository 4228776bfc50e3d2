"""Input sources: plain files, compressed files, archive members and directories.

A :class:`Source` is one logical input file. Compression is recognised from the first bytes, not
the file name, so a gzip file called ``flows.csv`` still reads. Formats that need a real path (an
external program reads it) call :meth:`Source.local_path`, which decompresses to a temporary file
only when the source is compressed.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

__all__ = [
    "ChangedInput",
    "DamagedInput",
    "SNIFF_BYTES",
    "Source",
    "compression_of",
    "consumed_bytes",
    "list_sources",
    "open_sources",
]

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


class ChangedInput(ValueError):
    """An input file whose size changed while it was read (a log still being written, a file
    being replaced): the rows it holds cannot be counted, so it is refused, never read to
    wherever the writer happened to be."""


class _Counting(io.RawIOBase):
    """A raw file that adds what is read to the progress counter.

    A regular file is read up to the size it had when opened, and reaching that end checks
    that the size is still the same: a file that grew or shrank meanwhile raises
    :class:`ChangedInput` (a file that grows as fast as it is read would otherwise never end).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._f = open(path, "rb", buffering=0)
        st = os.fstat(self._f.fileno())
        self._size = st.st_size if stat.S_ISREG(st.st_mode) else None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        global _consumed
        if self._size is None:
            n = self._f.readinto(b)
        else:
            left = self._size - self._pos
            n = self._f.readinto(memoryview(b)[:left]) if left > 0 else 0
            if not n:
                self._check_unchanged()
        _consumed += n or 0
        self._pos += n or 0
        return n  # type: ignore[return-value]

    def _check_unchanged(self) -> None:
        now = os.fstat(self._f.fileno()).st_size
        if now != self._size:
            raise ChangedInput(
                f"{self._path}: {'grew' if now > (self._size or 0) else 'shrank'} while it was read ({self._size:,} bytes "
                f"when opened, {now:,} at the end of reading): a file still being written cannot be read to a point "
                "where every row is counted. Read it once its writer has closed it (or a copy)"
            )

    def close(self) -> None:
        self._f.close()
        super().close()


def _counting(path: Path) -> BinaryIO:
    return io.BufferedReader(_Counting(path), 1 << 20)  # type: ignore[return-value]


class DamagedInput(ValueError):
    """A compressed input (or archive member) that cannot be decompressed to its end: cut short,
    corrupt data, or a checksum mismatch. Always an error, never a skip: the rows before the damage
    were already read, and the rows after it cannot be counted, so reading on would lose rows
    without saying how many."""


# What the decompressors raise for damaged data: gzip a BadGzipFile (an OSError) or zlib.error,
# bz2 an OSError, xz an LZMAError, all three an EOFError when cut short; zip a BadZipFile for a
# CRC mismatch; zstandard a ZstdError (a cut zstd stream is caught by _ZstdRaw itself).
_DAMAGE = (OSError, EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError, zstandard.ZstdError)
# zipfile raises NotImplementedError for what it cannot read (another compression method,
# encryption, a newer version): in a damaged header these flags are random (benchmarks/fuzz.py).
_ZIP_DAMAGE = (*_DAMAGE, NotImplementedError)

_CHECK_HINT = {
    "gzip": "gzip -t",
    "bz2": "bzip2 -t",
    "xz": "xz -t",
    "zstd": "zstd -t",
    "zip": "unzip -t",
}


class _ZstdRaw(io.RawIOBase):
    """zstd frames decompressed one after another, with an error when the data ends inside a
    frame: zstandard's own stream reader returns a cut stream as a shorter, clean end."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False  # some bytes of the current frame were fed
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        while not self._pending:
            chunk = self._raw.read(1 << 17)
            if not chunk:
                if self._in_frame:
                    raise EOFError("the zstd data ends inside a frame (the file is cut short)")
                return 0
            while chunk:
                self._in_frame = True
                self._pending += self._obj.decompress(chunk)
                if not self._obj.eof:
                    break
                chunk = self._obj.unused_data  # the next frame (zstd files may hold several)
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Guarded(io.RawIOBase):
    """A decompressed stream whose damage errors name the file and the point reached."""

    def __init__(self, inner: BinaryIO, source: Source) -> None:
        self._inner = inner
        self._source = source
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        try:
            # read1: one decompressor step at most, so that the offset below is close to the damage.
            read1 = getattr(self._inner, "read1", self._inner.read)
            data = read1(len(b))
        except _DAMAGE as e:
            s = self._source
            raise DamagedInput(
                f"{s.name}: damaged {s.compression} data, found after {self._offset:,} bytes of content "
                f"({type(e).__name__}: {e or 'no detail'}); nothing more can be read from it. Check it with "
                f"`{_CHECK_HINT.get(s.compression or '', 'its tool')}`, then repair it or move it out of the inputs"
            ) from e
        n = len(data)
        b[:n] = data
        self._offset += n
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


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
        """A binary stream of the decompressed content (buffered: lines can be iterated).

        Damaged compressed data raises :class:`DamagedInput` naming the file, where it is read.
        """
        if self.compression is None:
            return _counting(self.path)
        return io.BufferedReader(_Guarded(self._decompressor(), self), 1 << 20)  # type: ignore[return-value]

    def _decompressor(self) -> BinaryIO:
        if self.compression == "zip":
            try:
                archive = zipfile.ZipFile(_counting(self.path))
                return archive.open(self.member or "")  # type: ignore[return-value]
            except RuntimeError as e:  # zipfile's word for an encrypted member (found by benchmarks/fuzz.py)
                raise DamagedInput(f"{self.name}: not a readable zip archive: {e} (netflowgen reads "
                                   "unencrypted archives: extract it first)") from e
            except _ZIP_DAMAGE as e:
                raise DamagedInput(f"{self.name}: not a readable zip archive: {e}") from e
        if self.compression == "gzip":
            return gzip.GzipFile(fileobj=_counting(self.path), mode="rb")  # type: ignore[return-value]
        if self.compression == "zstd":
            return _ZstdRaw(_counting(self.path))  # type: ignore[return-value]
        if self.compression == "bz2":
            return bz2.BZ2File(_counting(self.path), "rb")  # type: ignore[return-value]
        if self.compression == "xz":
            return lzma.LZMAFile(_counting(self.path), "rb")  # type: ignore[return-value]
        raise ValueError(f"{self.name}: unsupported compression {self.compression!r}")

    def head(self, size: int = SNIFF_BYTES) -> bytes:
        """The first ``size`` decompressed bytes (fewer if the file is shorter); damaged data
        within them raises :class:`DamagedInput`."""
        with self.open() as f:
            return f.read(size)

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
                if any(not i.filename for i in archive.infolist()):
                    # zipfile's is_dir() fails on it (found by benchmarks/fuzz.py: a damaged name length)
                    raise DamagedInput(f"{path}: not a readable zip archive: a member has an empty name")
                members = [
                    i.filename
                    for i in archive.infolist()
                    if not i.is_dir() and not Path(i.filename).name.startswith(".")
                    and not i.filename.startswith("__MACOSX/")
                ]
        except _ZIP_DAMAGE as e:
            raise DamagedInput(f"{path}: not a readable zip archive: {e}") from e
        return [Source(path, f"{path}:{m}", "zip", m) for m in sorted(members)]
    return [Source(path, str(path), compression)]


def list_sources(path: str | os.PathLike[str]) -> tuple[list[Source], dict[str, str]]:
    """The logical input files behind a path, and the entries of a directory that are not read,
    each with the reason (dangling symbolic links, special files).

    A file gives itself (or each member of a zip); a directory gives every file below it,
    recursively and sorted, hidden files and folders skipped, symbolic links followed (a link to a
    file or folder in the inputs is read like the file or folder). A symbolic link that leads back
    into a folder it is inside is an error: walking it would never end.
    """
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise FileNotFoundError(f"{p}: a dangling symbolic link (to {os.readlink(p)})")
        raise FileNotFoundError(f"{p}: no such file or directory")
    if not p.is_dir():
        return _sources_of_file(p), {}
    files: list[Path] = []
    skipped: dict[str, str] = {}
    _walk(p, [], files, skipped)
    return [s for f in sorted(files) for s in _sources_of_file(f)], skipped


def _walk(folder: Path, above: list[tuple[int, int]], files: list[Path], skipped: dict[str, str]) -> None:
    st = folder.stat()
    here = (st.st_dev, st.st_ino)
    if here in above:
        raise ValueError(
            f"{folder}: a symbolic link loop (it leads back to {folder.resolve()}, a folder it is inside); "
            "remove the link or name the folders to read"
        )
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise OSError(f"{folder}: cannot list the folder: {e.strerror or e}") from e
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child = Path(entry.path)
        try:
            is_dir = entry.is_dir()  # follows symbolic links
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link that leads to itself, directly or through others
                raise ValueError(f"{child}: a symbolic link loop ({os.readlink(child)} leads back to it)") from e
            raise
        if is_dir:
            _walk(child, [*above, here], files, skipped)
        elif entry.is_file():
            files.append(child)
        elif entry.is_symlink():
            skipped[str(child)] = f"dangling symbolic link (to {os.readlink(child)})"
        else:
            skipped[str(child)] = "not a regular file (a device, socket or pipe)"


def open_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The logical input files behind a path: a file, each member of a zip, or every file of a
    directory (see :func:`list_sources`, which also says what was not read).
    """
    return list_sources(path)[0]
