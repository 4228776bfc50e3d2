"""nfcapd binary files (what ``nfcapd``/``nfpcapd`` write), read through the real ``nfdump``.

The binary layout changes between nfdump releases and its records are compressed (LZO, LZ4,
bz2), so the file is read by the program that owns the format: ``nfdump`` runs as a subprocess
and its output is streamed, never held whole in memory. The output format is ``fmt:`` with
``-N`` (plain numbers, numeric protocols) and ``-6`` (full IPv6 addresses; without it nfdump
shortens them to ``2001:db..::1``):

    %cnt|%tsr|%td|%sa|%da|%sp|%dp|%pr|%flg|%ipkt|%ibyt|%opkt|%obyt

Mapping: ``%tsr`` (epoch seconds with milliseconds) -> ts_start, ``%tsr + %td`` -> ts_end (in
nfdump 1.7.1 ``%ter`` prints the milliseconds of the start, not of the end), in -> fwd,
out -> rev (0 for NetFlow records), ``%flg`` letters -> tcp_flags. ``source_row`` is the record
number in nfdump's output order, from 1.

Lines nfdump prints that are not records are set aside explicitly: ``No matching flows`` (a file
without records), and the tunnel line it prints before a record that was tunnelled (GRE, IP in
IP): that line holds the outer addresses of the next record, its record counter ``%cnt`` is 0 and
it has no packets of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np
import polars as pl

from netflowgen.read.base import FlowFormat, FormatError, ReadOptions
from netflowgen.read.fields import first_reason, materialize, parse_epoch, parse_float, parse_int, parse_proto, parse_tcp_flag_letters
from netflowgen.read.source import Source
from netflowgen.read.text import TextBatch, attach_raw, read_delimited
from netflowgen.read.validate import REJECT_SCHEMA, Checked, check
from netflowgen.schema import PORT_PROTOCOLS, empty_flows

__all__ = ["FORMAT", "NFCAPD_MAGIC", "ProgramNotFound", "declared_flows", "require_program", "read_nfdump"]

log = logging.getLogger(__name__)

#: An nfcapd file starts with the little-endian uint16 0xA50C.
NFCAPD_MAGIC = b"\x0c\xa5"

_COLUMNS = ["cnt", "ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt", "opkt", "obyt"]
_FMT = "fmt:%cnt|%tsr|%td|%sa|%da|%sp|%dp|%pr|%flg|%ipkt|%ibyt|%opkt|%obyt"
_DELIMITER = "|"
#: Messages nfdump writes to stdout in place of records.
_MESSAGES = ("No matching flows", "No matched flows")


class ProgramNotFound(FileNotFoundError):
    """An external program a format needs is not installed (a FileNotFoundError, so that every
    command reports it as an error with its install hint, not a traceback)."""


def require_program(name: str) -> str:
    """The path of an nfdump-suite program, or an error that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ProgramNotFound(
            f"the `{name}` program is needed to read this format but is not on PATH; "
            "install the Debian/Ubuntu package `nfdump` (apt-get install nfdump)"
        )
    return path


def _sniff(head: bytes, name: str) -> bool:
    return head.startswith(NFCAPD_MAGIC)


def _candidates(fields: pl.DataFrame) -> pl.DataFrame:
    """nfdump ``fmt:`` fields (String columns) -> candidate canonical rows.

    Two steps, so that each field is parsed once: the parsed values and their reasons become
    columns (:func:`materialize`), and the rows are built from those columns.
    """
    parsed = {
        "ts_start": parse_epoch(pl.col("ts"), "start (%tsr)"),
        "duration": parse_float(pl.col("td"), "duration (%td)"),
        "proto": parse_proto(pl.col("pr"), "proto (%pr)"),
        "src_port": parse_int(pl.col("sp"), "src port (%sp)"),
        "dst_port": parse_int(pl.col("dp"), "dst port (%dp)"),
        "fwd_packets": parse_int(pl.col("ipkt"), "in packets (%ipkt)"),
        "fwd_bytes": parse_int(pl.col("ibyt"), "in bytes (%ibyt)"),
        "rev_packets": parse_int(pl.col("opkt"), "out packets (%opkt)"),
        "rev_bytes": parse_int(pl.col("obyt"), "out bytes (%obyt)"),
        "tcp_flags": parse_tcp_flag_letters(pl.col("flg")),
    }
    fields, parsed = materialize(fields, parsed)
    step = fields.select(
        pl.col("source_row"),
        pl.col("sa").str.strip_chars().alias("src_ip"),
        pl.col("da").str.strip_chars().alias("dst_ip"),
        *[p.value.alias(name) for name, p in parsed.items()],
        *[p.reason.alias(f"{name}_reason") for name, p in parsed.items()],
    )
    # nfdump writes ICMP type.code in %dp (``3.1``): ports only count on protocols with ports.
    has_ports = pl.col("proto").is_in(list(PORT_PROTOCOLS)).fill_null(False)
    duration_us = (pl.col("duration") * 1_000_000).round(0).cast(pl.Int64, strict=False)
    reasons = [
        pl.when(has_ports).then(pl.col(f"{name}_reason")) if name in ("src_port", "dst_port") else pl.col(f"{name}_reason")
        for name in parsed
    ]
    return step.select(
        pl.col("ts_start"),
        (pl.col("ts_start") + pl.duration(microseconds=duration_us)).alias("ts_end"),
        "src_ip", "dst_ip", "src_port", "dst_port", "proto",
        "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "tcp_flags", "source_row",
        first_reason(*reasons).alias("reject"),
    )


def _renumber(rows: pl.Series, skipped: np.ndarray, offset: int) -> pl.Series:
    """Output line numbers -> record numbers: minus the non-record lines before each line."""
    lines = rows.to_numpy()
    return pl.Series(rows.name, lines - offset - np.searchsorted(skipped, lines), pl.Int64)


def _records(batch: TextBatch, offset: int) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Set aside the lines of one batch that are not records; number the records from 1.

    Returns the record fields, the engine rejects, and how many lines were set aside.
    """
    tunnel = batch.fields["cnt"].str.strip_chars() == "0"
    message = batch.rejects["raw"].str.strip_chars().is_in(list(_MESSAGES))
    skipped = np.sort(
        np.concatenate(
            [batch.fields.filter(tunnel)["source_row"].to_numpy(), batch.rejects.filter(message)["source_row"].to_numpy()]
        ).astype(np.int64)
    )
    fields = batch.fields.filter(~tunnel)
    rejects = batch.rejects.filter(~message)
    if len(skipped) or offset:
        fields = fields.with_columns(_renumber(fields["source_row"], skipped, offset))
        rejects = rejects.with_columns(_renumber(rejects["source_row"], skipped, offset).cast(pl.UInt64))
    return fields, rejects, len(skipped)


def _damage(name: str, stderr: str, next_record: int) -> pl.DataFrame:
    """One reject that records where nfdump stopped reading a damaged file."""
    first = stderr.strip().splitlines()[0]
    return pl.DataFrame(
        {
            "source_file": [name],
            "source_row": [next_record],
            "reason": [f"nfdump could not read the rest of the file: {first}"],
            "raw": [stderr.strip()[:500]],
        },
        schema=REJECT_SCHEMA,
    )


#: Error output past which nfdump is taken to loop on a damaged file: nfdump 1.7.1 prints "Error
#: process appendix record type: N" forever on some (found by benchmarks/fuzz.py), and its
#: standard output stays silent, so a reader waiting on it would wait forever.
MAX_ERROR_OUTPUT = 1 << 20


class _LoopWatch:
    """Kills ``proc`` from a thread once its error output (the file ``err``) passes
    :data:`MAX_ERROR_OUTPUT`; ``looped`` says whether it did."""

    def __init__(self, proc: subprocess.Popen[bytes], err: IO[bytes]) -> None:
        self.proc, self.err, self.looped = proc, err, False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="nfdump-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # Woken by join() the moment nfdump has ended: a file read costs no polling delay.
        while not self._done.wait(0.05):
            if os.fstat(self.err.fileno()).st_size > MAX_ERROR_OUTPUT:
                self.looped = True
                self.proc.kill()
                return

    def message(self) -> str:
        self.err.seek(0)
        first = self.err.read(200).decode("utf-8", "replace").strip().splitlines()[:1]
        return (f"nfdump repeats {first[0] if first else 'an error'!r} without end (over "
                f"{MAX_ERROR_OUTPUT >> 20} MiB of error output): the file is damaged")

    def join(self) -> None:
        """Stop watching (call once nfdump has ended)."""
        self._done.set()
        self._thread.join()


def declared_flows(path: str, name: str | None = None) -> int | None:
    """The flow count an nfcapd file's statistics record states (``nfdump -I``), None if it
    states none (a file still being written holds zeros). ``name``: the file as errors name it
    (default ``path``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([require_program("nfdump"), "-I", "-r", path], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        watch = _LoopWatch(proc, err)
        proc.wait()
        watch.join()
        if watch.looped:
            raise FormatError(f"{name or path}: {watch.message()}")
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Flows" and value.strip().isdigit():
            return int(value) or None
    return None


def read_nfdump(
    inputs: Sequence[str], name: str, options: ReadOptions, declared: int | None = None
) -> Iterator[Checked]:
    """Stream the records nfdump reads from ``inputs`` (``["-r", FILE]`` or ``["-R", DIR]``).

    ``name`` is the file shown in ``source_file`` and rejects. A non-zero exit of nfdump raises
    :class:`FormatError` with its error output; a file nfdump reads only in part (damaged or
    truncated) keeps the records read and ends with one reject saying where and why it stopped.
    ``declared`` is the flow count the file states (:func:`declared_flows`): fewer records read
    is such a loss too (nfdump reads a file cut between blocks without a word), and none read at
    all a :class:`FormatError`.
    """
    command = [require_program("nfdump"), *inputs, "-q", "-N", "-6", "-o", _FMT]
    log.debug("%s: running %s", name, " ".join(command))
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        watch = _LoopWatch(proc, err)
        offset = 0
        records = 0
        try:
            for batch in read_delimited(
                proc.stdout, name, delimiter=_DELIMITER, columns=_COLUMNS, skip_lines=0,
                comment_prefix=None, block_bytes=options.block_bytes,
            ):
                fields, engine_rejects, skipped = _records(batch, offset)
                offset += skipped
                records += fields.height + engine_rejects.height
                checked = check(_candidates(fields), name)
                rejects = pl.concat([engine_rejects, attach_raw(checked.rejects, fields, _DELIMITER)], how="vertical")
                yield Checked(checked.flows, rejects)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early
                proc.kill()
                proc.wait()
            proc.stdout.close()
            watch.join()
        looped = watch.message() if watch.looped else None
        err.seek(0)
        stderr = err.read(MAX_ERROR_OUTPUT).decode("utf-8", "replace")
    if looped is not None:
        if records == 0:
            raise FormatError(f"{name}: {looped}")
        log.warning("%s: nfdump stopped after %d records: %s", name, records, looped)
        yield Checked(empty_flows(), _damage(name, looped, records + 1))
        return
    if returncode != 0:
        raise FormatError(f"{name}: nfdump failed (exit status {returncode}): {stderr.strip() or 'no message'}")
    if stderr.strip():
        if records == 0:
            raise FormatError(f"{name}: nfdump cannot read the file: {stderr.strip()}")
        log.warning("%s: nfdump stopped after %d records: %s", name, records, stderr.strip())
        yield Checked(empty_flows(), _damage(name, stderr, records + 1))
    elif declared is not None and records < declared:
        missing = f"the file states {declared:,} flows but nfdump read {records:,}: the rest is missing (cut short?)"
        if records == 0:
            raise FormatError(f"{name}: {missing}")
        log.warning("%s: %s", name, missing)
        yield Checked(empty_flows(), _damage(name, missing, records + 1))


def _read(source: Source, options: ReadOptions) -> Iterator[Checked]:
    if not source.head(len(NFCAPD_MAGIC)).startswith(NFCAPD_MAGIC):
        raise FormatError(f"{source.name}: not an nfcapd file (it does not start with the nfdump magic 0xA50C)")
    with source.local_path() as path:
        yield from read_nfdump(["-r", str(path)], source.name, options, declared_flows(str(path), source.name))


FORMAT = FlowFormat(
    name="nfcapd",
    description="nfcapd/nfpcapd binary flow files (nfdump 1.6/1.7), read with the nfdump program",
    sniff=_sniff,
    read=_read,
    extensions=(".nfcapd", ".nfdump"),
)
