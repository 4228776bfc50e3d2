"""Write the small built-in sample that `netflowgen demo` ingests (src/netflowgen/samples/).

The sample is authored, not captured: a few hosts of a small office network over two hours, with
DNS, web, NTP and SSH traffic, and a five-minute spoofed SYN flood against one host, written in
three real formats (Zeek conn.log, Argus binetflow, gzipped `nfdump -o csv`). A few rows are broken
on purpose (wrong field count, a bad timestamp, an ARP record, a 1970 clock) so the demo shows
how bad rows are set aside. Run it again to regenerate the same files: it is seeded.
"""

from __future__ import annotations

import gzip
import random
from datetime import datetime, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "netflowgen" / "samples"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc).timestamp()
HOSTS = [f"192.168.10.{i}" for i in (11, 12, 13, 20)]
SERVERS = {"dns": ("192.168.10.1", 53, "udp"), "web": ("93.184.216.34", 443, "tcp"),
           "ntp": ("162.159.200.1", 123, "udp"), "ssh": ("192.168.10.20", 22, "tcp")}
VICTIM = "192.168.10.20"


def flows(rng: random.Random, start: float, seconds: int) -> list[dict]:
    out = []
    for t in range(0, seconds, 7):
        host = rng.choice(HOSTS[:3])
        kind = rng.choices(list(SERVERS), weights=[5, 4, 1, 1])[0]
        ip, port, proto = SERVERS[kind]
        pk = rng.randint(1, 3) if proto == "udp" else rng.randint(6, 60)
        rpk = pk if proto == "udp" else max(1, pk - rng.randint(0, 5))
        out.append(dict(ts=start + t + rng.random(), dur=rng.random() * (0.2 if proto == "udp" else 8),
                        src=host, sport=rng.randint(32768, 60999), dst=ip, dport=port, proto=proto,
                        pk=pk, by=pk * rng.randint(60, 900), rpk=rpk, rby=rpk * rng.randint(60, 1400),
                        hist="ShADadFf" if proto == "tcp" else "Dd", label="Benign", detail="-"))
    flood_at = start + seconds * 0.6
    for i in range(900):
        out.append(dict(ts=flood_at + i / 3 + rng.random() / 3, dur=0.0,
                        src=f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                        sport=rng.randint(1024, 65535), dst=VICTIM, dport=80, proto="tcp", pk=1, by=60, rpk=0, rby=0,
                        hist="S", label="Malicious", detail="DDoS"))
    out.sort(key=lambda f: f["ts"])
    return out


def zeek(rows: list[dict]) -> str:
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
            "#open\t2026-03-02-09-00-00",
            "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tlabel\tdetailed-label",
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tstring\tstring"]
    lines = []
    for i, f in enumerate(rows):
        state = "S0" if f["hist"] == "S" else "SF"
        lines.append("\t".join(map(str, [f"{f['ts']:.6f}", f"C{i:017d}", f["src"], f["sport"], f["dst"], f["dport"], f["proto"], "-",
                                         f"{f['dur']:.6f}" if f["dur"] else "-", max(0, f["by"] - 40 * f["pk"]), max(0, f["rby"] - 40 * f["rpk"]),
                                         state, "T", "F", 0, f["hist"], f["pk"], f["by"], f["rpk"], f["rby"], "(empty)", f["label"], f["detail"]])))
    lines.insert(40, "1772442000.5\tCbroken\t192.168.10.11\t5353")  # cut short: wrong field count
    lines.insert(80, lines[80].replace(lines[80].split("\t")[0], "17724420O0.25", 1))  # letter O in the time
    return "\n".join(head + lines) + "\n#close\t2026-03-02-11-00-00\n"


def argus(rows: list[dict]) -> str:
    head = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label"
    lines = [head, "1970/01/01 00:00:00.000000,0.000000,llc,00:00:00:00:00:00,0,   ->,00:00:00:00:00:00,0,INT,,,1,60,60,1,"]
    for f in rows:
        t = datetime.fromtimestamp(f["ts"], timezone.utc).strftime("%Y/%m/%d %H:%M:%S.%f")
        state = ("S_" if f["hist"] == "S" else "FSPA_FSPA") if f["proto"] == "tcp" else "CON"
        lab = "flow=From-Botnet-DDoS" if f["label"] == "Malicious" else "flow=Normal"
        lines.append(f"{t},{f['dur']:.6f},{f['proto']},{f['src']},{f['sport']},  {'->' if f['hist'] == 'S' else '<->'},"
                     f"{f['dst']},{f['dport']},{state},0,0,{f['pk'] + f['rpk']},{f['by'] + f['rby']},{f['by']},{f['pk']},{lab}")
    lines.insert(30, "2026/03/02 10:03:11.120000,15.000000,arp,192.168.10.13,,  who,192.168.10.1,,CON,,,2,84,42,1,")
    return "\n".join(lines) + "\n"


def nfdump_csv(rows: list[dict]) -> str:
    head = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
    lines = [head]
    tail = ",0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00," + ",".join(["0-0-0"] * 10) + ",    0.000,    0.000,    0.000,10.0.0.1,0/0,1,1970-01-01 00:00:00.000"
    pk = by = 0
    for f in rows:  # NetFlow is unidirectional: one record per direction
        for src, sport, dst, dport, p, b in ((f["src"], f["sport"], f["dst"], f["dport"], f["pk"], f["by"]),
                                             (f["dst"], f["dport"], f["src"], f["sport"], f["rpk"], f["rby"])):
            if p == 0:
                continue
            ts = datetime.fromtimestamp(f["ts"], timezone.utc)
            te = datetime.fromtimestamp(f["ts"] + f["dur"], timezone.utc)
            flags = ("......S." if f["hist"] == "S" else "...AP.SF") if f["proto"] == "tcp" else "........"
            lines.append(f"{ts:%Y-%m-%d %H:%M:%S},{te:%Y-%m-%d %H:%M:%S},{f['dur']:.3f},{src},{dst},{sport},{dport},"
                         f"{f['proto'].upper()},{flags},0,0,{p},{b},0,0" + tail)
            pk, by = pk + p, by + b
    n = len(lines) - 1
    return "\n".join(lines) + f"\nSummary\nflows,bytes,packets,avg_bps,avg_pps,avg_bpp\n{n},{by},{pk},0,0,0\n"


def main() -> None:
    rng = random.Random(20260302)
    rows = flows(rng, T0, 7200)
    (OUT / "zeek").mkdir(parents=True, exist_ok=True)
    (OUT / "argus").mkdir(exist_ok=True)
    (OUT / "nfdump").mkdir(exist_ok=True)
    (OUT / "zeek" / "conn.log").write_text(zeek(rows[: len(rows) // 2]))
    (OUT / "argus" / "office.binetflow").write_text(argus(rows[len(rows) // 2 :]))
    with gzip.GzipFile(OUT / "nfdump" / "router.csv.gz", "wb", mtime=0) as f:
        f.write(nfdump_csv(rows[::5]).encode())


if __name__ == "__main__":
    main()
