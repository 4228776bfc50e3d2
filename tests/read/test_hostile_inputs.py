"""Inputs a hostile probe found read wrongly (issue 16, defects 1, 3, 4 and 9): compressed files
that are valid, cut or corrupt, directories with links, loops, repeats and header-only files,
and rows that used to vanish without a count."""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest
import zstandard

from netflowgen.read import DamagedInput, FormatError, ReadOptions, iter_checked
from netflowgen.read.source import list_sources

COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


def zeek_log(fixtures: Path, rows: int, seed: int = 1) -> bytes:
    """A Zeek conn.log of ``rows`` random rows (random, so that it compresses poorly and a cut
    after 64 KB of compressed data falls well inside the file)."""
    lines = (fixtures / "zeek" / "conn.log").read_bytes().splitlines(keepends=True)
    header = [line for line in lines if line.startswith(b"#") and not line.startswith(b"#close")]
    rng = random.Random(seed)
    body = []
    for i in range(rows):
        uid = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(17))
        out_pkts, in_pkts = rng.randrange(1, 999), rng.randrange(1, 999)
        body.append(
            f"{1622541600 + i}.{rng.randrange(10**6):06d}\tC{uid}\t10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            f"\t{rng.randrange(1024, 65536)}\t192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}\t{rng.choice((22, 53, 80, 443))}"
            f"\ttcp\t-\t{rng.random():.6f}\t{out_pkts * rng.randrange(1400)}\t{in_pkts * rng.randrange(1400)}\tSF\tT\tF\t0\tShADadFf"
            f"\t{out_pkts}\t{out_pkts * rng.randrange(40, 1500)}\t{in_pkts}\t{in_pkts * rng.randrange(40, 1500)}\t(empty)\n"
        )
    return b"".join(header) + "".join(body).encode()


def read_all(path: Path | list[Path], **options: object) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str]]:
    skipped: dict[str, str] = {}
    flows, rejects = [], []
    for _source, _fmt, checked in iter_checked(path, ReadOptions(**options), on_skip=lambda s, why: skipped.__setitem__(s.name, why)):  # type: ignore[arg-type]
        flows.append(checked.flows)
        rejects.append(checked.rejects)
    return pl.concat(flows), pl.concat(rejects), skipped


# Defect 1: .zst inputs.

@pytest.mark.parametrize("name", ["zeek/conn.log", "zeek/iot23_conn.log.labeled", "argus/comma.binetflow", "argus/tab.binetflow"])
def test_valid_zstd_files_read_like_the_plain_file(fixtures: Path, tmp_path: Path, name: str) -> None:
    plain = fixtures / name
    packed = tmp_path / (plain.name + ".zst")
    packed.write_bytes(COMPRESS["zst"](plain.read_bytes()))
    flows, rejects, _ = read_all(plain)
    zflows, zrejects, _ = read_all(packed)
    assert flows.height > 0
    assert zflows.drop("source_file").equals(flows.drop("source_file"))
    assert zrejects.drop("source_file").equals(rejects.drop("source_file"))


def test_zstd_file_of_several_frames(fixtures: Path, tmp_path: Path) -> None:
    data = zeek_log(fixtures, 200)
    half = data.index(b"\n", len(data) // 2) + 1
    packed = tmp_path / "two_frames.log.zst"
    packed.write_bytes(COMPRESS["zst"](data[:half]) + COMPRESS["zst"](data[half:]))
    flows, rejects, _ = read_all(packed)
    assert (flows.height, rejects.height) == (200, 0)


@pytest.mark.parametrize("name", ["zeek/conn_json.log", "nfdump_csv/flows.csv"])
def test_truncated_zstd_is_an_error_naming_the_file(fixtures: Path, tmp_path: Path, name: str) -> None:
    """Before: read to the cut with rc 0, the missing rows never mentioned."""
    data = COMPRESS["zst"]((fixtures / name).read_bytes())
    cut = tmp_path / ("cut_" + Path(name).name + ".zst")
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DamagedInput, match=rf"cut_{Path(name).name}\.zst: damaged zstd data.*ends inside a frame"):
        read_all(cut)


# Defect 3: damaged compressed files.

@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst"])
def test_cut_after_64k_is_an_error_naming_the_file(fixtures: Path, tmp_path: Path, kind: str) -> None:
    """Before: a bare `Aborted.` (gz, bz2, xz) from the EOFError past the sniffed head."""
    data = COMPRESS[kind](zeek_log(fixtures, 6000))
    assert len(data) > 100_000
    cut = tmp_path / f"conn.log.{kind}"
    cut.write_bytes(data[: 64 * 1024])
    with pytest.raises(DamagedInput, match=rf"conn\.log\.{kind}: damaged .* data, found after [\d,]+ bytes of content"):
        read_all(cut)


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0xFF
    return bytes(b)


def test_gzip_crc_mismatch_and_corrupt_deflate(fixtures: Path, tmp_path: Path) -> None:
    data = gzip.compress(zeek_log(fixtures, 500))
    crc = tmp_path / "crc.log.gz"
    crc.write_bytes(_flip(data, len(data) - 8))  # the stored CRC-32
    with pytest.raises(DamagedInput, match=r"crc\.log\.gz: damaged gzip data.*CRC check failed"):
        read_all(crc)
    bad = tmp_path / "deflate.log.gz"
    bad.write_bytes(data[:10] + b"\xff" * 64 + data[74:])  # an invalid block header in the stream
    with pytest.raises(DamagedInput, match=r"deflate\.log\.gz: damaged gzip data"):
        read_all(bad)


def test_zip_member_crc_mismatch(fixtures: Path, tmp_path: Path) -> None:
    archive = tmp_path / "flows.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("conn.log", zeek_log(fixtures, 300))
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[14] ^= 0xFF  # CRC-32 in the local header
    data[central + 16] ^= 0xFF  # and in the central directory
    archive.write_bytes(bytes(data))
    with pytest.raises(DamagedInput, match=r"flows\.zip:conn\.log: damaged zip data.*Bad CRC-32"):
        read_all(archive)



@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", 99, "That compression method is not supported"),  # local and central header byte 8
    ("flags", 0x41, "strong encryption"),  # general purpose flags: encrypted, strong encryption
    ("version", 255, "zip file version 25.5"),  # version needed to extract
    # Found at 10^5 inputs: the encrypted flag alone, a RuntimeError from zipfile
    ("flags", 0x01, "File 'conn.log' is encrypted, password required for extraction"),
])
def test_a_zip_header_zipfile_cannot_read_is_damage(fixtures: Path, tmp_path: Path, field: str, value: int,
                                                    message: str) -> None:
    """Found by benchmarks/fuzz.py: zipfile raises NotImplementedError for flags it does not
    support, which a damaged header holds at random; it was a traceback."""
    archive = tmp_path / "flows.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("conn.log", zeek_log(fixtures, 30))
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    offsets = {"method": (8, central + 10), "flags": (6, central + 8), "version": (4, central + 6)}[field]
    for at in offsets:
        data[at] = value
    archive.write_bytes(bytes(data))
    with pytest.raises(DamagedInput, match=rf"flows\.zip.*: not a readable zip archive: {message}"):
        read_all(archive)

def test_a_zip_member_with_an_empty_name_is_damage(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.py at 10^5 inputs: zipfile's is_dir() raised IndexError on it.
    archive = tmp_path / "flows.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo(""), b"ts\n")
    with pytest.raises(DamagedInput, match=r"flows\.zip: not a readable zip archive: a member has an empty name"):
        read_all(archive)


def test_damaged_file_in_a_directory_is_an_error_naming_it(fixtures: Path, tmp_path: Path) -> None:
    """The documented rule: a damaged compressed file fails the read, in a directory too (the rows
    after the damage cannot be counted), with the file's name, not a traceback."""
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(fixtures / "zeek" / "conn.log", folder / "a.log")
    data = gzip.compress(zeek_log(fixtures, 6000))
    (folder / "b.log.gz").write_bytes(data[: 64 * 1024])
    with pytest.raises(DamagedInput, match=r"logs/b\.log\.gz: damaged gzip data"):
        read_all(folder)


# Defect 4: rows read twice.

def test_a_file_reached_twice_is_read_once(fixtures: Path, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(fixtures / "zeek" / "conn.log", folder / "a.log")
    (folder / "link.log").symlink_to("a.log")
    once, _, _ = read_all(folder / "a.log")
    flows, _, skipped = read_all([folder, folder / "a.log", folder / "a.log"])
    assert flows.height == once.height > 0
    assert skipped == {
        str(folder / "link.log"): f"the same file as {folder / 'a.log'}, which is read once",
        str(folder / "a.log"): f"the same file as {folder / 'a.log'}, which is read once",
    }


# Defect 9: inputs lost quietly.

def test_linked_folders_are_read_and_dangling_links_listed(fixtures: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(fixtures / "zeek" / "conn.log", elsewhere / "b.log")
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "linked").symlink_to(elsewhere)
    (folder / "gone.log").symlink_to(tmp_path / "nowhere.log")
    sources, not_read = list_sources(folder)
    assert [s.name for s in sources] == [str(folder / "linked" / "b.log")]
    assert not_read == {str(folder / "gone.log"): f"dangling symbolic link (to {tmp_path / 'nowhere.log'})"}
    flows, _, skipped = read_all(folder)
    assert flows.height > 0
    assert list(skipped) == [str(folder / "gone.log")]


@pytest.mark.parametrize("target", ["..", "loop", "."])
def test_symlink_loops_are_an_error_not_a_hang(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "loop").symlink_to(target)
    with pytest.raises(ValueError, match=r"sub/loop: a symbolic link loop"):
        list_sources(folder)


def test_header_only_file_in_a_directory_is_accounted_for(fixtures: Path, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = (fixtures / "zeek" / "conn.log").read_text().splitlines(keepends=True)
    (folder / "empty_hour.log").write_text("".join(line for line in lines if line.startswith("#")))
    batches = list(iter_checked(folder))
    assert [(s.name, c.flows.height, c.rejects.height) for s, _f, c in batches] == [(str(folder / "empty_hour.log"), 0, 0)]


def test_a_line_of_a_million_tabs_is_a_reject(fixtures: Path, tmp_path: Path) -> None:
    lines = (fixtures / "zeek" / "conn.log").read_text().splitlines(keepends=True)
    first_row = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    hostile = tmp_path / "tabs.log"
    hostile.write_text("".join(lines[: first_row + 1]) + "\t" * 1_000_000 + "\n" + "".join(lines[first_row + 1 :]))
    plain, _, _ = read_all(fixtures / "zeek" / "conn.log")
    flows, rejects, _ = read_all(hostile)
    assert flows.height == plain.height
    assert rejects.filter(pl.col("source_row") == first_row + 2)["reason"].to_list() == ["expected 21 fields, found 1000001"]


def test_a_line_of_spaces_is_still_a_blank_line(fixtures: Path, tmp_path: Path) -> None:
    lines = (fixtures / "nfdump_csv" / "flows.csv").read_text().splitlines(keepends=True)
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(lines[0] + "   \n" + "".join(lines[1:]))
    plain, plain_rejects, _ = read_all(fixtures / "nfdump_csv" / "flows.csv")
    flows, rejects, _ = read_all(spaced)
    assert (flows.height, rejects.height) == (plain.height, plain_rejects.height)


def test_nprobe_flags_over_255_are_recorded(fixtures: Path, tmp_path: Path) -> None:
    from netflowgen.schema import Quality

    header, row = (fixtures / "nprobe" / "nf_unsw_nb15_v3.csv").read_text().splitlines()[:1] + [
        line for line in (fixtures / "nprobe" / "nf_unsw_nb15_v3.csv").read_text().splitlines() if ",6,7.0," in line
    ][:1]
    names = header.split(",")
    fields = row.split(",")
    fields[names.index("TCP_FLAGS")] = "511"
    path = tmp_path / "flags.csv"
    path.write_text(header + "\n" + ",".join(fields) + "\n")
    flows, rejects, _ = read_all(path, format="nprobe")
    assert rejects.height == 0
    assert flows["tcp_flags"].to_list() == [0xFF]
    assert flows["quality"].to_list() == [int(Quality.FLAGS_MASKED)]


@pytest.mark.skipif(shutil.which("nfdump") is None, reason="nfdump is not installed (apt-get install nfdump)")
def test_nfcapd_cut_to_200_bytes_is_reported(shared_data: Path, tmp_path: Path) -> None:
    """An nfdump 1.6-layout file keeps its flow count in the header: cut after it, nfdump reads
    nothing and says nothing. It is an error, named directly or in a directory: flows are lost."""
    real = shared_data / "stratosphere-argus" / "test1-malicious.nfdump"
    cut = tmp_path / "logs" / "cut.nfcapd"
    cut.parent.mkdir()
    cut.write_bytes(real.read_bytes()[:200])
    with pytest.raises(FormatError, match=r"cut\.nfcapd: the file states 4,593 flows but nfdump read 0"):
        read_all(cut)
    with pytest.raises(FormatError, match=r"cut\.nfcapd: the file states 4,593 flows"):
        read_all(cut.parent)


def test_every_damage_error_is_a_value_error() -> None:
    # The CLI reports ValueErrors as `error: <message>`; a DamagedInput must be one of them.
    assert issubclass(DamagedInput, ValueError) and not issubclass(DamagedInput, FormatError)
