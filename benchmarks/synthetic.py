"""Synthetic flow inputs for the benchmarks, in the real formats: seeded flows over three days
written as Zeek, Argus, nfdump CSV, CICFlowMeter, nProbe and Westermo-like CSV text, as pcap (for
``nfpcapd``), or the built-in simulator's flows (``simulated_flows``).

The flows are spread over three days: private and public IPv4 with about 3% IPv6 (compressed,
zero-padded and link-local forms), TCP/UDP/ICMP with realistic ports and outcomes (established,
unanswered SYN, rejected), heavy-tailed packet counts (Pareto), 40-1500 bytes per packet, and the
unset fields, non-IP records and labels each format really has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from harness import BenchmarkError

__all__ = ["TEXT_FORMATS", "TextFormat", "simulated_flows", "synth_flows", "write_pcap", "write_text"]


T0 = 1_709_251_200  # 2024-03-01 00:00:00 UTC
SPAN_S = 3 * 86_400  # the flows are spread over three days
CHUNK_ROWS = 500_000

_TCP, _UDP, _ICMP, _ICMP6 = 6, 17, 1, 58
_TCP_PORTS = np.array([443, 80, 22, 8080, 25, 3389, 445, 993, 8443, 21, 23, 110, 143, 5432, 3306], np.int64)
_UDP_PORTS = np.array([53, 443, 123, 5353, 1900, 137, 161, 500, 4500, 67, 51820, 3478], np.int64)
_LABELS = np.array(["Benign", "Benign", "Benign", "Benign", "Benign", "Benign", "Benign", "Benign", "DDoS", "PortScan"])
_HEX2 = pl.Series([f"{i:02x}" for i in range(256)])
_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def _ipv6_pool(rng: np.random.Generator, n: int) -> np.ndarray:
    """IPv6 hosts as sources write them: compressed, zero-padded and link-local forms mixed."""
    groups = rng.integers(0, 1 << 16, (n, 4))
    out = []
    for i, g in enumerate(groups):
        kind = i % 4
        if kind == 0:
            out.append(f"2001:db8:{g[0]:x}:{g[1]:x}::{g[2]:x}:{g[3]:x}")
        elif kind == 1:
            out.append(f"2a02:0598:{g[0]:04x}:0000:0000:0000:{g[2]:04x}:{g[3]:04x}")  # as Argus writes them
        elif kind == 2:
            out.append(f"fe80::{g[0]:x}:{g[1]:x}:{g[2]:x}:{g[3]:x}")
        else:
            out.append(f"2600:1f18:{g[0]:x}:{g[1]:x}:{g[2]:x}:{g[3]:x}:{g[0] ^ g[3]:x}:{g[1] ^ g[2]:x}")
    return np.array(out, dtype=object)


def _ipv4_text(addresses: np.ndarray) -> pl.Expr:
    """uint32 addresses -> dotted text."""
    a = addresses.astype(np.uint32)
    return pl.concat_str(
        [pl.lit(pl.Series((a >> shift) & 0xFF)).cast(pl.String) for shift in (24, 16, 8, 0)], separator="."
    )


def _ipv4(rng: np.random.Generator, n: int, private_share: float) -> np.ndarray:
    """uint32 IPv4 addresses: hosts in private networks, and public ones from all over."""
    private = rng.random(n) < private_share
    net = rng.choice(np.array([0xC0A80000, 0x0A000000, 0xAC100000], np.uint64), n, p=[0.5, 0.35, 0.15])
    host_bits = np.where(net == 0xC0A80000, 0x3FF, 0xFFFFF).astype(np.uint64)
    # A few hundred busy hosts inside, the rest spread out.
    inside = net | (
        np.where(rng.random(n) < 0.7, rng.integers(1, 400, n), rng.integers(1, 1 << 20, n)).astype(np.uint64)
        & host_bits
    )
    first = rng.choice(np.array([o for o in range(1, 224) if o not in (10, 127, 172, 192)], np.uint64), n)
    public = (first << 24) | rng.integers(0, 1 << 24, n).astype(np.uint64)
    return np.where(private, inside, public)


def synth_flows(n: int, seed: int, chunk: int, n_chunks: int) -> pl.DataFrame:
    """``n`` flows of chunk ``chunk``: the chunks follow each other in time over three days.

    Columns: start_us, dur_us (Int64, UTC epoch microseconds), src, dst (String), sport, dport,
    proto, fpk, fby, rpk, rby, fflags, rflags (Int64), kind (String: tcp-est, tcp-s0, tcp-rej,
    udp, icmp), v6 (Boolean), src_local, dst_local (Boolean), label (String).
    """
    rng = np.random.default_rng([seed, chunk])
    v6 = rng.random(n) < 0.03
    proto = np.where(
        v6,
        rng.choice(np.array([_TCP, _UDP, _ICMP6]), n, p=[0.6, 0.3, 0.1]),
        rng.choice(np.array([_TCP, _UDP, _ICMP]), n, p=[0.68, 0.27, 0.05]),
    )
    tcp, udp, icmp = proto == _TCP, proto == _UDP, (proto == _ICMP) | (proto == _ICMP6)

    # TCP outcome: established, unanswered SYN (scans, floods), rejected.
    outcome = rng.choice(np.array([0, 1, 2]), n, p=[0.75, 0.18, 0.07])
    answered = np.where(tcp, outcome == 0, np.where(udp, rng.random(n) < 0.7, rng.random(n) < 0.5))
    fpk = 1 + np.minimum(np.floor(rng.pareto(1.3, n) * 2.0), 5_000_000).astype(np.int64)
    fpk = np.where(tcp & (outcome > 0), np.minimum(fpk, 3), fpk)
    rpk = np.where(answered, np.maximum(1, (fpk * rng.uniform(0.3, 1.5, n)).astype(np.int64)), 0)
    rpk = np.where(tcp & (outcome == 2), 1, rpk)
    # Bytes per packet between 40 and 1500: small requests, bigger answers.
    fbpp = np.clip(rng.lognormal(np.log(110), 0.9, n), 40, 1500).astype(np.int64)
    rbpp = np.clip(rng.lognormal(np.log(700), 0.8, n), 40, 1500).astype(np.int64)
    fbpp = np.where(tcp & (outcome > 0), rng.choice(np.array([40, 44, 52, 60]), n), fbpp)
    rbpp = np.where(tcp & (outcome == 2), 40, rbpp)
    packets = fpk + rpk
    dur_us = np.where(packets > 1, np.minimum(rng.lognormal(np.log(0.4), 2.2, n), 3600.0) * 1e6, 0).astype(np.int64)

    lo = T0 * 1_000_000 + SPAN_S * 1_000_000 * chunk // n_chunks
    hi = T0 * 1_000_000 + SPAN_S * 1_000_000 * (chunk + 1) // n_chunks
    start_us = np.sort(rng.integers(lo, hi, n))

    src4 = _ipv4(rng, n, 0.65)
    dst4 = _ipv4(rng, n, 0.25)
    pool6 = _ipv6_pool(np.random.default_rng([seed, 6]), 4096)
    src6 = pool6[rng.integers(0, len(pool6), n)]
    dst6 = pool6[rng.integers(0, len(pool6), n)]

    sport = rng.integers(1024, 65536, n)
    dport = np.where(
        rng.random(n) < 0.8,
        np.where(tcp, rng.choice(_TCP_PORTS, n), rng.choice(_UDP_PORTS, n)),
        rng.integers(1, 65536, n),
    )
    icmp_type = rng.choice(np.array([8, 0, 3, 11]), n, p=[0.6, 0.2, 0.15, 0.05])
    icmp_type = np.where(proto == _ICMP6, icmp_type + 128, icmp_type)
    icmp_code = np.where(icmp_type == 3, rng.choice(np.array([0, 1, 3, 13]), n), 0)
    sport = np.where(icmp, icmp_type, sport)
    dport = np.where(icmp, icmp_code, dport)

    syn, fin, rst, psh, ack = 2, 1, 4, 8, 16
    fflags = np.select(
        [tcp & (outcome == 0), tcp & (outcome == 1), tcp & (outcome == 2)], [syn | ack | psh | fin, syn, syn], 0
    )
    rflags = np.select([tcp & (outcome == 0), tcp & (outcome == 2)], [syn | ack | psh | fin, rst | ack], 0)
    kind = np.select(
        [tcp & (outcome == 0), tcp & (outcome == 1), tcp & (outcome == 2), udp],
        ["tcp-est", "tcp-s0", "tcp-rej", "udp"],
        "icmp",
    )
    df = pl.DataFrame(
        {
            "start_us": start_us,
            "dur_us": dur_us,
            "v6": v6,
            "src6": pl.Series(src6, dtype=pl.String),
            "dst6": pl.Series(dst6, dtype=pl.String),
            "sport": sport,
            "dport": dport,
            "proto": proto.astype(np.int64),
            "fpk": fpk,
            "fby": fpk * fbpp,
            "rpk": rpk,
            "rby": rpk * rbpp,
            "fflags": fflags.astype(np.int64),
            "rflags": rflags.astype(np.int64),
            "kind": kind,
            "src_local": ~v6 & ((src4 >> 24 == 10) | (src4 >> 16 == 0xC0A8) | (src4 >> 20 == 0xAC1)),
            "dst_local": ~v6 & ((dst4 >> 24 == 10) | (dst4 >> 16 == 0xC0A8) | (dst4 >> 20 == 0xAC1)),
            "label": _LABELS[rng.integers(0, len(_LABELS), n)],
        }
    )
    return df.with_columns(
        pl.when(pl.col("v6")).then(pl.col("src6")).otherwise(_ipv4_text(src4)).alias("src"),
        pl.when(pl.col("v6")).then(pl.col("dst6")).otherwise(_ipv4_text(dst4)).alias("dst"),
    ).drop("src6", "dst6")


def _uids(rng: np.random.Generator, n: int, prefix: str = "C", width: int = 17) -> pl.Series:
    """Random base62 ids like Zeek's ``uid`` (they do not compress)."""
    chars = _BASE62[rng.integers(0, 62, (n, width))]
    return pl.Series(np.char.add(prefix, chars.view(f"S{width}").ravel().astype(f"U{width}")))


def _strftime(us: pl.Expr, fmt: str) -> pl.Expr:
    return pl.from_epoch(us, "us").dt.strftime(fmt)


def _secs(us: pl.Expr, decimals: int) -> pl.Expr:
    """Epoch microseconds -> seconds text with a fixed number of decimals (as tools print them)."""
    scale = 10 ** (6 - decimals)
    whole = us // 1_000_000
    frac = ((us % 1_000_000) // scale).cast(pl.String).str.zfill(decimals)
    return pl.concat_str([whole.cast(pl.String), pl.lit("."), frac]) if decimals else whole.cast(pl.String)


def _flag_letters(flags: pl.Expr, order: str) -> pl.Expr:
    """A flag bit set as letters in fixed positions (``.`` where unset), e.g. nfdump's ``...AP.SF``."""
    bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
    return pl.concat_str([pl.when(flags & bits[c] != 0).then(pl.lit(c)).otherwise(pl.lit(".")) for c in order])


def _flag_set(flags: pl.Expr) -> pl.Expr:
    """Only the letters that are set (Argus ``-Z b`` states: ``FSPA``)."""
    return pl.concat_str(
        [
            pl.when(flags & bit != 0).then(pl.lit(c)).otherwise(pl.lit(""))
            for c, bit in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16))
        ]
    )


def _proto_name(upper: bool = False) -> pl.Expr:
    names = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
    e = pl.col("proto").replace_strict(names, return_dtype=pl.String)
    return e.str.to_uppercase() if upper else e


# --- formats -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFormat:
    """A synthetic text file in one format: how to write its rows, and how Polars reads it."""

    name: str
    module: str
    """Reader module in netflowgen.read that must exist."""
    file_name: str
    header: Callable[[], str]
    rows: Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame]
    separator: str = ","
    trailer: Callable[[int], str] = lambda n: ""
    ingest_args: tuple[str, ...] = ()
    read_csv: dict[str, Any] = field(default_factory=dict)
    """Options of the reference ``polars.read_csv`` for this layout."""
    trailer_rows: int = 0
    """Rows the reference reads beyond the flows (a trailer it cannot skip)."""


ZEEK_FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes conn_state "
    "local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents"
).split()
ZEEK_TYPES = (
    "time string addr port addr port enum string interval count count string bool bool count string count count "
    "count count set[string]"
).split()


def _zeek_header() -> str:
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        "#open\t2024-03-01-00-00-00\n#fields\t" + "\t".join(ZEEK_FIELDS) + "\n#types\t" + "\t".join(ZEEK_TYPES) + "\n"
    )


def _zeek_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    one_packet = (pl.col("fpk") + pl.col("rpk")) == 1
    kind = pl.col("kind")
    v4_header = pl.when(pl.col("v6")).then(40).otherwise(20)
    l4_header = pl.when(pl.col("proto") == _TCP).then(20).otherwise(8)

    def payload(bytes_col: str, pk_col: str) -> pl.Expr:
        return (pl.col(bytes_col) - pl.col(pk_col) * (v4_header + l4_header)).clip(0)

    def unset_if_one(e: pl.Expr) -> pl.Expr:
        # Zeek writes "-" for what it never measured: a one-packet connection has no duration.
        return pl.when(one_packet).then(pl.lit("-")).otherwise(e.cast(pl.String))

    service = pl.col("dport").replace_strict({53: "dns", 443: "ssl", 80: "http"}, default="-", return_dtype=pl.String)
    udp_answered = (kind == "udp") & (pl.col("rpk") > 0)
    conn_state = (
        pl.when(udp_answered)
        .then(pl.lit("SF"))
        .otherwise(kind.replace_strict({"tcp-est": "SF", "tcp-s0": "S0", "tcp-rej": "REJ", "udp": "S0"}, default="OTH"))
    )
    history = (
        pl.when(udp_answered)
        .then(pl.lit("Dd"))
        .otherwise(
            kind.replace_strict({"tcp-est": "ShADadFf", "tcp-s0": "S", "tcp-rej": "Sr", "udp": "D"}, default="-")
        )
    )

    def local(flag: str) -> pl.Expr:
        return pl.when(pl.col("v6")).then(pl.lit("-")).when(pl.col(flag)).then(pl.lit("T")).otherwise(pl.lit("F"))

    names = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}
    return f.select(
        _secs(pl.col("start_us"), 6).alias("ts"),
        pl.lit(_uids(rng, f.height)).alias("uid"),
        pl.col("src").alias("id.orig_h"),
        pl.col("sport").alias("id.orig_p"),
        pl.col("dst").alias("id.resp_h"),
        pl.col("dport").alias("id.resp_p"),
        pl.col("proto").replace_strict(names, return_dtype=pl.String).alias("proto"),
        pl.when(kind.is_in(["tcp-est", "udp"])).then(service).otherwise(pl.lit("-")).alias("service"),
        unset_if_one(_secs(pl.col("dur_us"), 6)).alias("duration"),
        unset_if_one(payload("fby", "fpk")).alias("orig_bytes"),
        unset_if_one(payload("rby", "rpk")).alias("resp_bytes"),
        conn_state.alias("conn_state"),
        local("src_local").alias("local_orig"),
        local("dst_local").alias("local_resp"),
        pl.lit(0).alias("missed_bytes"),
        history.alias("history"),
        pl.col("fpk").alias("orig_pkts"),
        pl.col("fby").alias("orig_ip_bytes"),
        pl.col("rpk").alias("resp_pkts"),
        pl.col("rby").alias("resp_ip_bytes"),
        pl.lit("(empty)").alias("tunnel_parents"),
    )


def _argus_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    kind = pl.col("kind")
    icmp = kind == "icmp"
    n = f.height
    # Argus mixes link-layer records into its flows (rejected as not IP): llc with MAC addresses.
    llc = pl.lit(pl.Series(rng.random(n) < 0.004))
    mac = pl.lit("00:1b:21:3a:4f:" + _HEX2.gather(rng.integers(0, 256, n)))
    state = (
        pl.when(kind.str.starts_with("tcp"))
        .then(pl.concat_str([_flag_set(pl.col("fflags")), pl.lit("_"), _flag_set(pl.col("rflags"))]))
        .when(kind == "udp")
        .then(pl.when(pl.col("rpk") > 0).then(pl.lit("CON")).otherwise(pl.lit("INT")))
        .otherwise(pl.when(pl.col("rpk") > 0).then(pl.lit("ECR")).otherwise(pl.lit("ECO")))
    )

    def hexport(c: str) -> pl.Expr:  # ICMP type and code as Argus writes them: 0x0008
        return pl.concat_str([pl.lit("0x00"), pl.col(c).replace_strict(range(256), _HEX2.to_list(), default="00")])

    label = (
        pl.when(pl.col("label") == "Benign")
        .then(
            pl.when(pl.col("rpk") > 0)
            .then(pl.lit("flow=Background-Established"))
            .otherwise(pl.lit("flow=Background-Attempt"))
        )
        .otherwise(pl.concat_str([pl.lit("flow=From-Botnet-"), pl.col("label"), pl.lit("-"), _proto_name(upper=True)]))
    )
    return f.select(
        _strftime(pl.col("start_us"), "%Y/%m/%d %H:%M:%S%.6f").alias("StartTime"),
        _secs(pl.col("dur_us"), 6).alias("Dur"),
        pl.when(llc).then(pl.lit("llc")).otherwise(_proto_name()).alias("Proto"),
        pl.when(llc).then(mac).otherwise(pl.col("src")).alias("SrcAddr"),
        pl.when(llc)
        .then(pl.lit(""))
        .when(icmp)
        .then(hexport("sport"))
        .otherwise(pl.col("sport").cast(pl.String))
        .alias("Sport"),
        pl.when(pl.col("rpk") > 0).then(pl.lit("  <->")).otherwise(pl.lit("   ->")).alias("Dir"),
        pl.when(llc).then(pl.lit("01:80:c2:00:00:00")).otherwise(pl.col("dst")).alias("DstAddr"),
        pl.when(llc)
        .then(pl.lit(""))
        .when(icmp)
        .then(hexport("dport"))
        .otherwise(pl.col("dport").cast(pl.String))
        .alias("Dport"),
        pl.when(llc).then(pl.lit("INT")).otherwise(state).alias("State"),
        pl.lit(0).alias("sTos"),
        pl.when(pl.col("rpk") > 0).then(pl.lit("0")).otherwise(pl.lit("")).alias("dTos"),
        (pl.col("fpk") + pl.col("rpk")).alias("TotPkts"),
        (pl.col("fby") + pl.col("rby")).alias("TotBytes"),
        pl.col("fby").alias("SrcBytes"),
        pl.col("fpk").alias("SrcPkts"),
        label.alias("Label"),
    )


ARGUS_HEADER = (
    "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label"
)

NFDUMP_HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,"
    "ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
)


# What nfdump 1.7 writes in the columns a NetFlow v5/v9 export leaves empty.
_NFDUMP_CONSTANTS = {
    **dict.fromkeys(["fwd", "stos", "opkt", "obyt", "sas", "das", "smk", "dmk", "dtos", "dir", "svln", "dvln"], "0"),
    **dict.fromkeys(["nh", "nhb"], "0.0.0.0"),
    **dict.fromkeys(["ismc", "odmc", "idmc", "osmc"], "00:00:00:00:00:00"),
    **{f"mpls{i}": "0-0-0" for i in range(1, 11)},
    **dict.fromkeys(["cl", "sl", "al"], "    0.000"),
    "ra": "10.0.0.1",
    "eng": "0/0",
    "exid": "1",
    "tr": "1970-01-01 00:00:00.000",
}


def _nfdump_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """``nfdump -o csv`` of NetFlow records: one direction (``opkt``/``obyt`` 0), times in whole
    seconds, ICMP type*256+code in ``dp``."""
    icmp = pl.col("kind") == "icmp"
    known = {
        "ts": _strftime(pl.col("start_us"), "%Y-%m-%d %H:%M:%S"),
        "te": _strftime(pl.col("start_us") + pl.col("dur_us"), "%Y-%m-%d %H:%M:%S"),
        "td": _secs(pl.col("dur_us"), 3),
        "sa": pl.col("src"),
        "da": pl.col("dst"),
        "sp": pl.when(icmp).then(0).otherwise(pl.col("sport")),
        "dp": pl.when(icmp).then(pl.col("sport") * 256 + pl.col("dport")).otherwise(pl.col("dport")),
        "pr": pl.col("proto").replace_strict({6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP6"}, return_dtype=pl.String),
        "flg": _flag_letters(pl.col("fflags") | pl.col("rflags"), "CEUAPRSF"),
        "ipkt": pl.col("fpk"),
        "ibyt": pl.col("fby"),
        "in": pl.lit(pl.Series(rng.integers(1, 24, f.height))),
        "out": pl.lit(pl.Series(rng.integers(1, 24, f.height))),
    }
    return f.select(
        (known[name] if name in known else pl.lit(_NFDUMP_CONSTANTS[name])).alias(name)
        for name in NFDUMP_HEADER.split(",")
    )


def _nfdump_trailer(n: int) -> str:
    return f"Summary\nflows,bytes,packets,avg_bps,avg_pps,avg_bpp\n{n},0,0,0,0,0\n"


CIC_COLUMNS = (
    "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Flow Duration,"
    " Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets, Total Length of Bwd Packets,"
    " Fwd Packet Length Max, Fwd Packet Length Min, Fwd Packet Length Mean, Fwd Packet Length Std,"
    "Bwd Packet Length Max, Bwd Packet Length Min, Bwd Packet Length Mean, Bwd Packet Length Std,Flow Bytes/s,"
    " Flow Packets/s, Flow IAT Mean, Flow IAT Std, Flow IAT Max, Flow IAT Min,Fwd IAT Total, Fwd IAT Mean,"
    " Fwd IAT Std, Fwd IAT Max, Fwd IAT Min,Bwd IAT Total, Bwd IAT Mean, Bwd IAT Std, Bwd IAT Max, Bwd IAT Min,"
    "Fwd PSH Flags, Bwd PSH Flags, Fwd URG Flags, Bwd URG Flags, Fwd Header Length, Bwd Header Length,"
    "Fwd Packets/s, Bwd Packets/s, Min Packet Length, Max Packet Length, Packet Length Mean,"
    " Packet Length Std, Packet Length Variance,FIN Flag Count, SYN Flag Count, RST Flag Count,"
    " PSH Flag Count, ACK Flag Count, URG Flag Count, CWE Flag Count, ECE Flag Count, Down/Up Ratio,"
    " Average Packet Size, Avg Fwd Segment Size, Avg Bwd Segment Size, Fwd Header Length,Fwd Avg Bytes/Bulk,"
    " Fwd Avg Packets/Bulk, Fwd Avg Bulk Rate, Bwd Avg Bytes/Bulk, Bwd Avg Packets/Bulk,Bwd Avg Bulk Rate,"
    "Subflow Fwd Packets, Subflow Fwd Bytes, Subflow Bwd Packets, Subflow Bwd Bytes,Init_Win_bytes_forward,"
    " Init_Win_bytes_backward, act_data_pkt_fwd, min_seg_size_forward,Active Mean, Active Std, Active Max,"
    " Active Min,Idle Mean, Idle Std, Idle Max, Idle Min, Label"
)


def _cic_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """CIC-IDS2017 ``TrafficLabelling`` layout (CICFlowMeter-V3 output): 85 columns, names with
    leading spaces, `` Fwd Header Length`` twice, duration in microseconds, ``Timestamp`` as
    ``dd/mm/yyyy hh:mm:ss`` on a 12-hour clock without AM/PM. Like the tool, it sizes TCP and UDP
    packets only: ICMP flows come out as protocol 0, ports 0, lengths 0."""
    n = f.height
    names = CIC_COLUMNS.split(",")
    measured = pl.col("kind") != "icmp"
    dur = pl.col("dur_us")
    fpk, rpk = pl.col("fpk"), pl.col("rpk")
    l4 = pl.when(pl.col("proto") == _TCP).then(20).otherwise(8)
    l3 = pl.when(pl.col("v6")).then(40).otherwise(20)
    fhdr = pl.when(measured).then(fpk * l4).otherwise(0)
    rhdr = pl.when(measured).then(rpk * l4).otherwise(0)
    fpay = pl.when(measured).then((pl.col("fby") - fpk * (l3 + l4)).clip(0)).otherwise(0)
    rpay = pl.when(measured).then((pl.col("rby") - rpk * (l3 + l4)).clip(0)).otherwise(0)
    secs = dur.cast(pl.Float64) / 1e6
    flags = pl.col("fflags") | pl.col("rflags")
    flow_id = pl.concat_str(
        [
            pl.col("src"),
            pl.col("dst"),
            pl.col("sport").cast(pl.String),
            pl.col("dport").cast(pl.String),
            pl.col("proto").cast(pl.String),
        ],
        separator="-",
    )
    known = {
        "Flow ID": flow_id,
        " Source IP": pl.col("src"),
        " Source Port": pl.when(measured).then(pl.col("sport")).otherwise(0),
        " Destination IP": pl.col("dst"),
        " Destination Port": pl.when(measured).then(pl.col("dport")).otherwise(0),
        " Protocol": pl.when(measured).then(pl.col("proto")).otherwise(0),
        " Timestamp": _strftime(pl.col("start_us"), "%d/%m/%Y %I:%M:%S"),
        " Flow Duration": dur,
        " Total Fwd Packets": fpk,
        " Total Backward Packets": rpk,
        "Total Length of Fwd Packets": fpay,
        " Total Length of Bwd Packets": rpay,
        " Fwd Packet Length Mean": fpay / fpk,
        " Bwd Packet Length Mean": pl.when(rpk > 0).then(rpay / rpk).otherwise(0.0),
        "Flow Bytes/s": pl.when(dur > 0).then((fpay + rpay) / secs).otherwise(0.0),
        " Flow Packets/s": pl.when(dur > 0).then((fpk + rpk) / secs).otherwise(0.0),
        " Flow IAT Mean": dur / (fpk + rpk - 1).clip(1),
        "Fwd IAT Total": dur,
        " Fwd Header Length": fhdr,
        " Bwd Header Length": rhdr,
        "FIN Flag Count": (flags & 1 != 0).cast(pl.Int8),
        " SYN Flag Count": (flags & 2 != 0).cast(pl.Int8),
        " RST Flag Count": (flags & 4 != 0).cast(pl.Int8),
        " PSH Flag Count": (flags & 8 != 0).cast(pl.Int8),
        " ACK Flag Count": (flags & 16 != 0).cast(pl.Int8),
        "Subflow Fwd Packets": fpk,
        " Subflow Fwd Bytes": fpay,
        " Subflow Bwd Packets": rpk,
        " Subflow Bwd Bytes": rpay,
        " Label": pl.when(pl.col("label") == "Benign").then(pl.lit("BENIGN")).otherwise(pl.col("label")),
    }
    noise = pl.lit(pl.Series(rng.random(n)))
    exprs = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in known:
            e = known[name]
        elif "Flag" in name or "Bulk" in name or name.strip().startswith("Active"):
            e = pl.lit(0)
        elif "IAT" in name or "Idle" in name:
            e = (noise * dur).round(0)
        else:
            e = (noise * (40 + i * 17)).round(6)
        # The layout names " Fwd Header Length" twice; frame columns must be unique (the header
        # line written to the file keeps the original names).
        exprs.append(e.alias(name + ".1" if name in seen else name))
        seen.add(name)
    return f.select(exprs)


NPROBE_COLUMNS = (
    "FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS,IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,"
    "L7_PROTO,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,TCP_FLAGS,CLIENT_TCP_FLAGS,SERVER_TCP_FLAGS,"
    "FLOW_DURATION_MILLISECONDS,DURATION_IN,DURATION_OUT,MIN_TTL,MAX_TTL,LONGEST_FLOW_PKT,SHORTEST_FLOW_PKT,"
    "MIN_IP_PKT_LEN,MAX_IP_PKT_LEN,SRC_TO_DST_SECOND_BYTES,DST_TO_SRC_SECOND_BYTES,RETRANSMITTED_IN_BYTES,"
    "RETRANSMITTED_IN_PKTS,RETRANSMITTED_OUT_BYTES,RETRANSMITTED_OUT_PKTS,SRC_TO_DST_AVG_THROUGHPUT,"
    "DST_TO_SRC_AVG_THROUGHPUT,NUM_PKTS_UP_TO_128_BYTES,NUM_PKTS_128_TO_256_BYTES,NUM_PKTS_256_TO_512_BYTES,"
    "NUM_PKTS_512_TO_1024_BYTES,NUM_PKTS_1024_TO_1514_BYTES,TCP_WIN_MAX_IN,TCP_WIN_MAX_OUT,ICMP_TYPE,"
    "ICMP_IPV4_TYPE,DNS_QUERY_ID,DNS_QUERY_TYPE,DNS_TTL_ANSWER,FTP_COMMAND_RET_CODE,SRC_TO_DST_IAT_MIN,"
    "SRC_TO_DST_IAT_MAX,SRC_TO_DST_IAT_AVG,SRC_TO_DST_IAT_STDDEV,DST_TO_SRC_IAT_MIN,DST_TO_SRC_IAT_MAX,"
    "DST_TO_SRC_IAT_AVG,DST_TO_SRC_IAT_STDDEV,Label,Attack"
)


def _nprobe_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """NetFlow-v3 feature CSV (NF-UNSW-NB15-v3 and its family): nProbe field names, epoch
    milliseconds, ``Label`` 0/1 and ``Attack``. The IPV4_* columns hold IPv6 text for IPv6 flows."""
    n = f.height
    names = NPROBE_COLUMNS.split(",")
    start_ms = pl.col("start_us") // 1000
    end_ms = (pl.col("start_us") + pl.col("dur_us")) // 1000
    icmp = pl.col("kind") == "icmp"
    known = {
        "FLOW_START_MILLISECONDS": start_ms,
        "FLOW_END_MILLISECONDS": end_ms,
        "IPV4_SRC_ADDR": pl.col("src"),
        "L4_SRC_PORT": pl.when(icmp).then(0).otherwise(pl.col("sport")),
        "IPV4_DST_ADDR": pl.col("dst"),
        "L4_DST_PORT": pl.when(icmp).then(0).otherwise(pl.col("dport")),
        "PROTOCOL": pl.col("proto"),
        "L7_PROTO": pl.lit(pl.Series(rng.choice(np.array([0.0, 7.0, 91.0, 5.0, 188.0, 7.178]), n))),
        "IN_BYTES": pl.col("fby"),
        "IN_PKTS": pl.col("fpk"),
        "OUT_BYTES": pl.col("rby"),
        "OUT_PKTS": pl.col("rpk"),
        "TCP_FLAGS": pl.col("fflags") | pl.col("rflags"),
        "CLIENT_TCP_FLAGS": pl.col("fflags"),
        "SERVER_TCP_FLAGS": pl.col("rflags"),
        "FLOW_DURATION_MILLISECONDS": end_ms - start_ms,
        "ICMP_TYPE": pl.when(icmp).then(pl.col("sport") * 256 + pl.col("dport")).otherwise(0),
        "Label": (pl.col("label") != "Benign").cast(pl.Int8),
        "Attack": pl.col("label"),
    }
    noise = rng.integers(0, 1 << 16, n)
    exprs = []
    for i, name in enumerate(names):
        if name in known:
            exprs.append(known[name].alias(name))
        elif "IAT" in name or "THROUGHPUT" in name:
            exprs.append((pl.lit(pl.Series(noise)) * (i + 0.5)).alias(name))
        else:
            exprs.append((pl.lit(pl.Series(noise)) % (i * 7 + 3)).alias(name))
    return f.select(exprs)


WESTERMO_COLUMNS = (
    "sAddress,rAddress,sMACs,rMACs,sIPs,rIPs,protocol,startDate,endDate,start,end,startOffset,endOffset,duration,"
    "sPackets,rPackets,sBytesSum,rBytesSum,sBytesMax,rBytesMax,sBytesMin,rBytesMin,sBytesAvg,rBytesAvg,sLoad,rLoad,"
    "sPayloadSum,rPayloadSum,sPayloadMax,rPayloadMax,sPayloadMin,rPayloadMin,sPayloadAvg,rPayloadAvg,"
    "sInterPacketAvg,rInterPacketAvg,sttl,rttl,sAckRate,rAckRate,sUrgRate,rUrgRate,sFinRate,rFinRate,sPshRate,"
    "rPshRate,sSynRate,rSynRate,sRstRate,rRstRate,sWinTCP,rWinTCP,sFragmentRate,rFragmentRate,sAckDelayMax,"
    "rAckDelayMax,sAckDelayMin,rAckDelayMin,sAckDelayAvg,rAckDelayAvg,IT_B_Label,IT_M_Label,NST_B_Label,NST_M_Label"
)


def _westermo_rows(f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """The Westermo flow CSV layout: addresses in sIPs/rIPs, ``protocol`` like ``IPV4-TCP``, start
    and end as UTC epoch seconds, ``startDate`` as local (CET) text; ARP/LLDP rows with MACs only."""
    n = f.height
    names = WESTERMO_COLUMNS.split(",")
    arp = pl.lit(pl.Series(rng.random(n) < 0.05))
    smac = pl.lit("b8:27:eb:15:" + _HEX2.gather(rng.integers(0, 256, n)) + ":9c")
    start, end = pl.col("start_us"), pl.col("start_us") + pl.col("dur_us")
    proto = pl.concat_str(
        [
            pl.when(pl.col("v6")).then(pl.lit("IPV6-")).otherwise(pl.lit("IPV4-")),
            pl.col("proto").replace_strict({6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPV6"}, return_dtype=pl.String),
        ]
    )
    sby, rby = pl.col("fby"), pl.col("rby")
    known = {
        "sAddress": pl.when(arp).then(smac).otherwise(pl.col("src")),
        "rAddress": pl.when(arp).then(pl.lit("ff:ff:ff:ff:ff:ff")).otherwise(pl.col("dst")),
        "sMACs": smac,
        "rMACs": pl.lit("00:07:7c:88:6e:83"),
        "sIPs": pl.when(arp).then(pl.lit("")).otherwise(pl.col("src")),
        "rIPs": pl.when(arp).then(pl.lit("")).otherwise(pl.col("dst")),
        "protocol": pl.when(arp).then(pl.lit("ARP")).otherwise(proto),
        "startDate": _strftime(start + 3_600_000_000, "%Y-%m-%d %H:%M:%S%.6f"),
        "endDate": _strftime(end + 3_600_000_000, "%Y-%m-%d %H:%M:%S%.6f"),
        "start": _secs(start, 6),
        "end": _secs(end, 6),
        "startOffset": ((start - T0 * 1_000_000) / 1e6),
        "endOffset": ((end - T0 * 1_000_000) / 1e6),
        "duration": pl.col("dur_us") / 1e6,
        "sPackets": pl.col("fpk"),
        "rPackets": pl.col("rpk"),
        "sBytesSum": sby,
        "rBytesSum": pl.when(pl.col("rpk") > 0).then(rby),
        "sBytesAvg": sby / pl.col("fpk"),
        "rBytesAvg": pl.when(pl.col("rpk") > 0).then(rby / pl.col("rpk")),
        "IT_B_Label": (pl.col("label") != "Benign").cast(pl.Int8),
        "IT_M_Label": pl.when(pl.col("label") == "Benign").then(pl.lit("Normal")).otherwise(pl.lit("BAD-PORTSCAN1")),
        "NST_B_Label": (pl.col("label") != "Benign").cast(pl.Int8),
        "NST_M_Label": pl.when(pl.col("label") == "Benign").then(pl.lit("Normal")).otherwise(pl.lit("BAD-PORTSCAN1")),
    }
    noise = rng.random(n)
    exprs = []
    for i, name in enumerate(names):
        if name in known:
            exprs.append(known[name].alias(name))
        elif name.startswith("r") and i % 2:
            exprs.append(pl.when(pl.col("rpk") > 0).then(pl.lit(pl.Series(noise)) * i).alias(name))
        else:
            exprs.append((pl.lit(pl.Series(noise)) * i).round(4).alias(name))
    return f.select(exprs)


TEXT_FORMATS: dict[str, TextFormat] = {
    f.name: f
    for f in (
        TextFormat(
            "zeek",
            "zeek",
            "conn.log",
            _zeek_header,
            _zeek_rows,
            separator="\t",
            trailer=lambda n: "#close\t2024-03-04-00-00-00\n",
            read_csv={
                "separator": "\t",
                "has_header": False,
                "comment_prefix": "#",
                "quote_char": None,
                "new_columns": ZEEK_FIELDS,
            },
        ),
        TextFormat("argus", "argus", "flows.binetflow", lambda: ARGUS_HEADER + "\n", _argus_rows),
        TextFormat(
            "nfdump-csv",
            "nfdump_csv",
            "flows.csv",
            lambda: NFDUMP_HEADER + "\n",
            _nfdump_rows,
            # Polars parses the whole file even with n_rows: the three Summary lines are
            # read as rows, their values that do not parse as null.
            trailer=_nfdump_trailer,
            read_csv={"ignore_errors": True, "truncate_ragged_lines": True},
            trailer_rows=3,
        ),
        TextFormat(
            "cicflowmeter", "cicflowmeter", "Monday-WorkingHours.pcap_ISCX.csv", lambda: CIC_COLUMNS + "\n", _cic_rows
        ),
        TextFormat("nprobe", "nprobe", "NF-UNSW-NB15-v3.csv", lambda: NPROBE_COLUMNS + "\n", _nprobe_rows),
        TextFormat(
            "westermo",
            "mapped_csv",
            "output_left.csv",
            lambda: WESTERMO_COLUMNS + "\n",
            _westermo_rows,
            ingest_args=("--mapping", "westermo"),
        ),
    )
}


def write_text(
    fmt: TextFormat,
    path: Path,
    rows: int,
    seed: int,
    advance: Callable[[int], None],
    flows: Iterable[pl.DataFrame] | None = None,
) -> None:
    """Write ``rows`` synthetic flows in ``fmt`` to ``path``, chunk by chunk (bounded memory).

    The flows come from :func:`synth_flows`, or from ``flows`` (frames in its layout, e.g.
    :func:`simulated_flows`) when given."""
    n_chunks = max(1, -(-rows // CHUNK_ROWS))
    if flows is None:
        flows = (
            synth_flows(min(CHUNK_ROWS, rows - chunk * CHUNK_ROWS), seed, chunk, n_chunks) for chunk in range(n_chunks)
        )
    written = 0
    with open(path, "wb") as out:
        out.write(fmt.header().encode())
        for chunk, frame in enumerate(flows):
            text = fmt.rows(frame, np.random.default_rng([seed, chunk, 1]))
            text.write_csv(
                out, include_header=False, separator=fmt.separator, quote_style="never", float_precision=None
            )
            written += frame.height
            advance(frame.height)
        out.write(fmt.trailer(rows).encode())
    if written != rows:
        raise BenchmarkError(f"{path.name}: wrote {written} flows, {rows} were asked for")


def simulated_flows(rows: int, seed: int) -> Iterator[pl.DataFrame]:
    """Exactly ``rows`` flows of ``netflowgen simulate`` (a network over three days, with its
    attacks), in the layout of :func:`synth_flows` (IPv4 only: the simulator has no IPv6)."""
    from netflowgen.simulate import (
        AttackConfig,
        SimConfig,
        expected_flows,
        iter_chunks,
        scale_to_flows,
    )

    config = SimConfig(nodes=max(100, rows // 5000), hours=SPAN_S // 3600, seed=seed)
    if expected_flows(config.with_(flows_per_node_hour=0.0))[1] > rows / 10:
        config = config.with_(attacks=AttackConfig(count=0, scans=0))
    # Ask for enough that the Poisson counts cannot fall short, then cut at exactly ``rows``.
    config = scale_to_flows(config, int(rows + 6 * rows**0.5 + 1000))
    left = rows
    for chunk in iter_chunks(config):
        if left == 0:
            return
        frame = pl.from_arrow(chunk.table.slice(0, left))
        assert isinstance(frame, pl.DataFrame)
        left -= frame.height
        yield from_canonical(frame)
    if left:
        raise BenchmarkError(f"the simulation made {rows - left} flows, fewer than {rows}")


def from_canonical(flows: pl.DataFrame) -> pl.DataFrame:
    """Canonical flows in the layout of :func:`synth_flows`, for the text-format writers.

    The per-direction TCP flags and the outcome are recovered from the simulator's records: no
    answer (rev_packets 0) is an unanswered SYN, SYN|RST|ACK with one answer a refusal."""
    flags = pl.col("tcp_flags").fill_null(0).cast(pl.Int64)
    tcp = pl.col("proto") == _TCP
    kind = (
        pl.when(tcp & (pl.col("rev_packets") == 0))
        .then(pl.lit("tcp-s0"))
        .when(tcp & (flags == 22) & (pl.col("rev_packets") == 1))
        .then(pl.lit("tcp-rej"))
        .when(tcp)
        .then(pl.lit("tcp-est"))
        .when(pl.col("proto") == _UDP)
        .then(pl.lit("udp"))
        .otherwise(pl.lit("icmp"))
    )
    icmp = pl.col("proto").is_in([_ICMP, _ICMP6])
    local = ("10.", "192.168.", "172.16.")
    return flows.select(
        pl.col("ts_start").dt.epoch("us").alias("start_us"),
        (pl.col("ts_end") - pl.col("ts_start")).dt.total_microseconds().alias("dur_us"),
        pl.lit(False).alias("v6"),
        pl.col("src_ip").alias("src"),
        pl.col("dst_ip").alias("dst"),
        # ICMP: type and code where the ports are (an echo request, 8/0).
        pl.when(icmp).then(8).otherwise(pl.col("src_port")).cast(pl.Int64).alias("sport"),
        pl.when(icmp).then(0).otherwise(pl.col("dst_port")).cast(pl.Int64).alias("dport"),
        pl.col("proto").cast(pl.Int64),
        pl.col("fwd_packets").cast(pl.Int64).alias("fpk"),
        pl.col("fwd_bytes").cast(pl.Int64).alias("fby"),
        pl.col("rev_packets").cast(pl.Int64).alias("rpk"),
        pl.col("rev_bytes").cast(pl.Int64).alias("rby"),
        pl.when(kind.is_in(["tcp-s0", "tcp-rej"])).then(2).otherwise(flags).alias("fflags"),
        pl.when(kind == "tcp-rej").then(20).when(kind == "tcp-s0").then(0).otherwise(flags).alias("rflags"),
        kind.alias("kind"),
        pl.any_horizontal(pl.col("src_ip").str.starts_with(p) for p in local).alias("src_local"),
        pl.any_horizontal(pl.col("dst_ip").str.starts_with(p) for p in local).alias("dst_local"),
        pl.when(pl.col("label") == "benign").then(pl.lit("Benign")).otherwise(pl.col("label")).alias("label"),
    )


# --- pcap -> nfcapd ----------------------------------------------------------------------------


def write_pcap(path: Path, n_flows: int, seed: int, span_s: int) -> int:
    """A pcap of ``n_flows`` distinct IPv4 TCP/UDP/ICMP flows of 1-4 packets, in time order.

    Packets are captured with a 14+20+L4-header snap length; the IP total length says how big
    they were on the wire (40-1500 bytes), as with ``tcpdump -s 64``. Returns the packet count.
    """
    rng = np.random.default_rng([seed, 99])
    proto = rng.choice(np.array([_TCP, _UDP, _ICMP], np.uint8), n_flows, p=[0.7, 0.25, 0.05])
    npk = np.minimum(rng.geometric(0.55, n_flows), 4)
    npk = np.where(proto == _ICMP, 1, npk)  # nfpcapd makes every ICMP packet its own flow
    src = _ipv4(rng, n_flows, 0.65).astype(np.uint32)
    dst = _ipv4(rng, n_flows, 0.25).astype(np.uint32)
    # Distinct 5-tuples: the source port walks through the flows.
    sport = (1024 + np.arange(n_flows) % 64_000).astype(np.uint16)
    dport = np.where(proto == _TCP, rng.choice(_TCP_PORTS, n_flows), rng.choice(_UDP_PORTS, n_flows)).astype(np.uint16)
    start = np.sort(rng.uniform(0, span_s, n_flows))

    fid = np.repeat(np.arange(n_flows), npk)
    k = np.arange(len(fid)) - np.repeat(np.cumsum(npk) - npk, npk)
    ts = start[fid] + k * rng.exponential(0.05, len(fid))
    order = np.argsort(ts, kind="stable")
    fid, ts = fid[order], ts[order]
    n = len(fid)
    pr = proto[fid]
    l4 = np.where(pr == _TCP, 20, 8).astype(np.int64)
    ip_len = np.maximum(np.clip(rng.lognormal(np.log(300), 1.0, n), 40, 1500).astype(np.int64), 20 + l4)
    cap_len = 14 + 20 + l4
    rec_len = 16 + cap_len
    off = np.concatenate(([0], np.cumsum(rec_len)[:-1]))
    buf = np.zeros(int(rec_len.sum()), np.uint8)

    def put(pos: np.ndarray, values: Any, dtype: str, mask: np.ndarray | None = None) -> None:
        b = np.broadcast_to(np.asarray(values), (n,)).astype(dtype).view(np.uint8).reshape(n, -1)
        if mask is not None:
            pos, b = pos[mask], b[mask]
        buf[pos[:, None] + np.arange(b.shape[1])[None, :]] = b

    put(off, T0 + ts.astype(np.int64), "<u4")
    put(off + 4, ((ts % 1) * 1e6).astype(np.int64), "<u4")
    put(off + 8, cap_len, "<u4")
    put(off + 12, 14 + ip_len, "<u4")
    eth = off + 16
    put(eth, np.full(n, 0x00163E000001), ">u8")  # dst MAC (6 bytes) + first 2 of src, overwritten next
    put(eth + 6, np.full(n, 0x00163E000002), ">u8")
    put(eth + 12, 0x0800, ">u2")
    ip = eth + 14
    put(ip, 0x45, "u1")
    put(ip + 2, ip_len, ">u2")
    put(ip + 4, rng.integers(0, 1 << 16, n), ">u2")
    put(ip + 8, 64, "u1")
    put(ip + 9, pr, "u1")
    put(ip + 12, src[fid], ">u4")
    put(ip + 16, dst[fid], ">u4")
    # IPv4 header checksum over the ten 16-bit words.
    words = buf[ip[:, None] + np.arange(20)[None, :]].reshape(n, 10, 2).astype(np.uint32)
    total = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    put(ip + 10, (~total) & 0xFFFF, ">u2")
    l4p = ip + 20
    icmp = pr == _ICMP
    put(l4p, np.where(icmp, 0x0800, sport[fid]), ">u2")
    put(l4p + 2, np.where(icmp, 0, dport[fid]), ">u2")
    tcp = pr == _TCP
    put(l4p + 4, rng.integers(0, 1 << 32, n, dtype=np.uint64), ">u4", tcp)
    first = k[order] == 0
    put(l4p + 12, np.where(first, 0x5002, 0x5018), ">u2", tcp)  # SYN first, then PSH+ACK
    put(l4p + 14, 64_240, ">u2", tcp)
    put(l4p + 4, ip_len - 20, ">u2", pr == _UDP)
    header = (
        np.array([0xA1B2C3D4], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 65_535, 1], "<u4").tobytes()
    )
    with open(path, "wb") as f:
        f.write(header)
        f.write(buf.tobytes())
    return n


