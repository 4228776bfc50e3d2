"""NetFlow v5, v9 and IPFIX (v10) export packets -> canonical flows.

A :class:`Decoder` is fed one datagram at a time (:meth:`Decoder.feed`) and hands out the flows of
everything fed since the last call as one validated batch (:meth:`Decoder.take`). Feeding only
walks the packet and set headers and copies each data set's bytes aside; the records are decoded
in bulk when taken (``wire.py``: templates, their numpy layouts and the bulk decoding), and
validated as files are (:func:`netflowgen.read.validate.check`). This module keeps the state an
exporter builds up and counts everything it cannot decode.

State is kept per exporter (the datagram's source address, without the port: a router keeps its
address across restarts, not its port) and per observation domain (v9 source id, IPFIX
observation domain id, v5 engine type/id):

* templates and options templates per (exporter, version, domain, template id). A template sent
  again unchanged is a refresh; a different definition under the same id replaces the old one
  (counted as a redefinition); an IPFIX template with no fields withdraws it.
* everything a sender can make the decoder hold is bounded, least recently used first out, and
  every eviction counted (:attr:`Decoder.evictions`): templates per (exporter, version, domain)
  (``max_templates_per_domain``), domains tracked (``max_domains``, each with its templates,
  sequence state and IPFIX init time), templates and template fields held in all
  (``max_templates``, ``max_fields``: the least recently used *other* domain goes first, so that
  one sender churning domains or template ids evicts its own state, not a quiet exporter's), fields
  in one template (``max_template_fields``, at most ``max_fields``; a longer one is refused,
  "template too large"), and
  per-address counters (``max_exporters``: when a new address comes and the table is full, the
  address with the fewest datagrams is folded into the ``"other"`` entry, so that the sums below
  still hold over all entries and the busiest exporters keep their own counters). A forgotten
  domain's data sets count as "data before template" until its templates are sent again, and a
  forgotten address's record numbers (``source_row``) start again at 1.
* options data records are decoded and skipped (counted); the options used are IPFIX
  ``systemInitTimeMilliseconds`` (160), the clock that IPFIX ``flowStart/EndSysUpTime`` (22/21)
  count from, and packet sampling: ``samplingInterval`` (34), ``samplerRandomInterval`` (50) or
  ``samplingPacketInterval``/``Space`` (305/306), for the sampler the record names (v9
  ``FLOW_SAMPLER_ID`` 48, IPFIX ``selectorId`` 302; at most ``max_samplers_per_domain`` per
  domain) or else for the whole domain. The v5 header's sampling interval counts too. A flow
  record's packets and bytes are multiplied by the sampling in force when it came (its sampler's,
  else its domain's), as nfcapd does, and :attr:`ExporterStats.sampled` counts the records scaled
  by each rate.
* sequence numbers per (exporter, version, domain). Units: v5 counts flows, v9 counts export
  packets (RFC 3954), IPFIX counts data records (RFC 7011). Exporters differ in how they count
  (softflowd 1.1.0 puts the count *including* the packet's own records in IPFIX headers, where
  RFC 7011 asks for the count before it): each stream keeps the conventions all its packets so
  far agree with, and measures gaps by the first of them (the standard one while it still fits). A forward jump is a gap: its size is counted as lost
  (records for v5 and IPFIX, packets for v9). A backward jump (reordering, exporter restart)
  resynchronises and is counted as a reset, never as loss.

Mapped IANA elements: bytes 1/85/23, packets 2/86/24 (first present, in that order), protocol 4,
TCP flags 6, ports 7/11, IPv4 8/12, IPv6 27/28, times 150/151 (seconds), 152/153 (milliseconds),
154/155 and 156/157 (micro/nanoseconds, NTP format as RFC 7011 encodes them), 22/21 (sysUpTime
milliseconds: v9 from the header's uptime and export time, IPFIX from
``systemInitTimeMilliseconds``), 160. A record without any time field gets the packet's export
time as start (and no end: validation flags it ``NO_END``). NetFlow is unidirectional: reverse
counters are 0, except in IPFIX biflows (RFC 5103), whose reverse counters are the same
elements under enterprise 29305; a biflow whose ``biflowDirection`` (239) says the source is the
responder has its ends swapped, so that ``src`` is the initiator. Labels are null.

Nothing a datagram holds can crash the decoder: every datagram, set and record is either decoded
or counted under a reason (:class:`ExporterStats`):

* ``packets == packets_decoded + sum(packet_errors)``; a rejected datagram is skipped whole;
* ``sets == sets_decoded + sum(set_errors)`` over the sets of decoded v9/IPFIX datagrams; a set
  whose length field is impossible ends the datagram (the rest cannot be located);
* ``records == flows + sum(rejected)``: every flow data record decoded becomes a flow or a reject
  (with its reason; see :data:`netflowgen.read.validate.REJECT_SCHEMA`).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from netflowgen.collect.wire import (
    ELEMENTS,
    IPFIX_HEADER,
    MAX_MS,
    SET_HEADER,
    U16,
    U32,
    V5_HEADER,
    V5_MAX_COUNT,
    V5_RECORD,
    V5_TEMPLATE,
    V9_HEADER,
    VARIABLE,
    PendingSet,
    SamplerTable,
    Template,
    U16x2,
    U16x3,
    build_template,
    decode_records,
    sampler_of,
    sampling_of,
)
from netflowgen.read.validate import REJECT_SCHEMA, Checked, check, reason_kind
from netflowgen.schema import empty_flows

__all__ = ["ELEMENTS", "OTHER", "SEQUENCE_UNITS", "Decoder", "ExporterStats", "Template"]

#: The counters entry that addresses beyond ``Decoder.max_exporters`` are folded into.
OTHER = "other"

#: What a sequence gap counts, per export version.
SEQUENCE_UNITS = {5: "records", 9: "packets", 10: "records"}

# --- counters ----------------------------------------------------------------------------------


@dataclass
class ExporterStats:
    """What one exporter sent and what became of it (see the module docstring for the sums)."""

    exporter: str
    packets: int = 0
    datagram_bytes: int = 0
    packets_decoded: int = 0
    versions: Counter[int] = field(default_factory=Counter)
    packet_errors: Counter[str] = field(default_factory=Counter)
    sets: int = 0
    sets_decoded: int = 0
    set_errors: Counter[str] = field(default_factory=Counter)
    records: int = 0
    """flow data records decoded (each becomes a flow or a reject)."""
    flows: int = 0
    flow_packets: int = 0
    flow_bytes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    options_records: int = 0
    template_records: int = 0
    templates: int = 0
    """templates currently defined."""
    template_redefinitions: int = 0
    template_withdrawals: int = 0
    unknown_fields: int = 0
    """fields of received template definitions that no mapped element uses (kept, skipped)."""
    sequence_gaps: int = 0
    sequence_resets: int = 0
    lost_records: int = 0
    """v5 flows and IPFIX data records the sequence numbers say were never received."""
    lost_packets: int = 0
    """v9 export packets the sequence numbers say were never received."""
    sampled: Counter[str] = field(default_factory=Counter)
    """flow data records whose packets and bytes were scaled up, by sampling (1 in N)."""

    def errors(self) -> int:
        return sum(self.packet_errors.values()) + sum(self.set_errors.values())

    def fold(self, other: ExporterStats) -> None:
        """Add ``other``'s counters to these (an address leaving the table joins ``"other"``)."""
        for name, value in vars(other).items():
            if name == "exporter":
                continue
            if isinstance(value, Counter):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, object]:
        return {
            "exporter": self.exporter, "packets": self.packets, "datagram_bytes": self.datagram_bytes,
            "packets_decoded": self.packets_decoded, "versions": {str(k): v for k, v in sorted(self.versions.items())},
            "packet_errors": dict(self.packet_errors), "sets": self.sets, "sets_decoded": self.sets_decoded,
            "set_errors": dict(self.set_errors), "records": self.records, "flows": self.flows,
            "flow_packets": self.flow_packets, "flow_bytes": self.flow_bytes, "rejected": dict(self.rejected),
            "options_records": self.options_records, "template_records": self.template_records,
            "templates": self.templates, "template_redefinitions": self.template_redefinitions,
            "template_withdrawals": self.template_withdrawals, "unknown_fields": self.unknown_fields,
            "sequence_gaps": self.sequence_gaps, "sequence_resets": self.sequence_resets,
            "lost_records": self.lost_records, "lost_packets": self.lost_packets, "sampled": dict(self.sampled),
        }


class _Bad(Exception):
    """A datagram or set that is skipped, with the counter reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Stream:
    """Sequence state of one (exporter, version, domain)."""

    seq: int
    records: int
    flow_records: int
    conventions: tuple[str, ...]


@dataclass
class _Domain:
    """What one (exporter, version, observation domain) holds."""

    templates: OrderedDict[int, Template] = field(default_factory=OrderedDict)
    """template id -> template, least recently used first."""
    fields: int = 0
    """fields of its templates, in all."""
    stream: _Stream | None = None
    init_ms: int = -1
    """IPFIX systemInitTimeMilliseconds from its options records; -1 unknown."""
    sampling: float = 1.0
    """Packets on the wire per packet counted, from its options records (or v5 headers); 1: none."""
    samplers: OrderedDict[int, float] = field(default_factory=OrderedDict)
    """sampler (selector) id -> its sampling, for flow records that name theirs."""
    sampler_table: SamplerTable | None = None
    """``samplers`` as the sets fed since they last changed hold them."""


# Conventions per version: name -> expected sequence number from (previous stream state, this
# packet's record count, this packet's flow record count). The first is the standard one.
_CONVENTIONS = {
    5: {"before": lambda s, n, f: s.seq + s.records, "including": lambda s, n, f: s.seq + n},
    9: {"packets": lambda s, n, f: s.seq + 1, "records-before": lambda s, n, f: s.seq + s.records,
        "records-including": lambda s, n, f: s.seq + n, "flows-including": lambda s, n, f: s.seq + f},
    10: {"before": lambda s, n, f: s.seq + s.records, "including": lambda s, n, f: s.seq + n,
         "flows-before": lambda s, n, f: s.seq + s.flow_records, "flows-including": lambda s, n, f: s.seq + f},
}


# --- the decoder -------------------------------------------------------------------------------


class Decoder:
    """Stateful NetFlow v5/v9/IPFIX decoder for any number of exporters.

    >>> d = Decoder()
    >>> d.feed(b"garbage", "192.0.2.1")
    >>> d.stats["192.0.2.1"].packet_errors
    Counter({'unknown version': 1})
    >>> d.take().flows.height
    0
    """

    def __init__(self, max_templates: int = 16_384, *, max_templates_per_domain: int = 1_024,
                 max_domains: int = 4_096, max_fields: int = 1 << 18, max_template_fields: int = 1_024,
                 max_exporters: int = 256, max_samplers_per_domain: int = 256) -> None:
        if min(max_templates, max_templates_per_domain, max_domains, max_fields, max_template_fields, max_exporters,
               max_samplers_per_domain) < 1:
            raise ValueError("the decoder's limits must be positive")
        # A template costs about 4 KB plus 100 bytes a field (measured): the defaults hold at most
        # about 64 MB + 26 MB of templates.
        self.max_templates = max_templates
        """Templates held at most, all exporters (the least recently used domains go first)."""
        self.max_templates_per_domain = min(max_templates_per_domain, max_templates)
        """Templates one (exporter, version, domain) holds at most (its least recently used goes)."""
        self.max_domains = max_domains
        """(exporter, version, domain) tracked at most (the least recently used goes, whole)."""
        self.max_fields = max_fields
        """Fields of all templates held, at most."""
        # No larger than max_fields: a template that could never be held is refused instead
        # (the limit used to be raised to max_template_fields, silently).
        self.max_template_fields = min(max_template_fields, max_fields)
        """Fields one template may have; a longer one is refused ("template too large")."""
        self.max_samplers_per_domain = max_samplers_per_domain
        """Samplers (their id and sampling) one domain remembers; the least recently stated goes."""
        self.max_exporters = max_exporters
        """Addresses with their own counters in :attr:`stats`; the rest are folded into ``"other"``."""
        self.stats: dict[str, ExporterStats] = {}
        self.evictions: Counter[str] = Counter()
        """What was forgotten to stay within the limits: ``template``, ``domain`` (with its
        templates), ``exporter`` (counters folded into ``"other"``), ``sampler``."""
        self.template_count = 0
        self._held: Counter[str] = Counter()  # templates held per address (its stats' gauge follows)
        self.field_count = 0
        self._domains: OrderedDict[tuple[str, int, int], _Domain] = OrderedDict()
        self._pending: dict[str, dict[Template, list[PendingSet]]] = {}
        self.pending_records = 0
        """flow records fed and not yet taken."""

    @property
    def templates(self) -> dict[tuple[str, int, int, int], Template]:
        """Every template held, by (exporter, version, domain, template id) (a copy)."""
        return {(*key, tid): tpl for key, dom in self._domains.items() for tid, tpl in dom.templates.items()}

    @property
    def domains(self) -> int:
        """(exporter, version, domain) tracked."""
        return len(self._domains)

    def _stats(self, exporter: str) -> ExporterStats:
        """The counters of an address: its own, or ``"other"`` once it was folded there."""
        st = self.stats.get(exporter)
        return st if st is not None else self.stats.setdefault(OTHER, ExporterStats(OTHER))

    def _new_stats(self, exporter: str) -> ExporterStats:
        if len(self.stats) - (OTHER in self.stats) >= self.max_exporters:
            # The quietest address makes room (a scan of max_exporters entries, paid only by a
            # datagram from a new address): a flood of new addresses churns among themselves.
            victim = min((s for name, s in self.stats.items() if name != OTHER), key=lambda s: s.packets)
            del self.stats[victim.exporter]
            self.stats.setdefault(OTHER, ExporterStats(OTHER)).fold(victim)
            self.evictions["exporter"] += 1
        st = self.stats[exporter] = ExporterStats(exporter)
        held = self._held.get(exporter, 0)
        if held:  # an address back after it was folded: its templates leave "other" with it
            self.stats[OTHER].templates -= held
            st.templates = held
        return st

    def _held_change(self, exporter: str, n: int) -> None:
        self._stats(exporter).templates += n
        self._held[exporter] += n
        if not self._held[exporter]:
            del self._held[exporter]

    def _domain(self, exporter: str, version: int, domain: int) -> _Domain:
        key = (exporter, version, domain)
        dom = self._domains.get(key)
        if dom is not None:
            self._domains.move_to_end(key)
            return dom
        while len(self._domains) >= self.max_domains:
            self._evict_domain()
        dom = self._domains[key] = _Domain()
        return dom

    def _evict_domain(self, key: tuple[str, int, int] | None = None) -> None:
        """Forget a domain, by default the least recently used (never the one in use: it was
        moved last)."""
        if key is None:
            (exporter, _, _), dom = self._domains.popitem(last=False)
        else:
            exporter, dom = key[0], self._domains.pop(key)
        self._held_change(exporter, -len(dom.templates))
        self.template_count -= len(dom.templates)
        self.field_count -= dom.fields
        self.evictions["domain"] += 1

    def _drop_template(self, exporter: str, dom: _Domain, tid: int) -> Template | None:
        tpl = dom.templates.pop(tid, None)
        if tpl is not None:
            self._held_change(exporter, -1)
            dom.fields -= len(tpl.fields)
            self.template_count -= 1
            self.field_count -= len(tpl.fields)
        return tpl

    def _make_room(self, exporter: str, dom: _Domain, n_fields: int) -> None:
        """Evict until one more template of ``n_fields`` fields fits in ``dom`` and in all."""
        while dom.templates and len(dom.templates) >= self.max_templates_per_domain:
            self._drop_template(exporter, dom, next(iter(dom.templates)))
            self.evictions["template"] += 1
        while self.template_count >= self.max_templates or self.field_count + n_fields > self.max_fields:
            # The least recently used other domain that holds templates (the domains before it
            # hold none: forgetting their sequence state would free nothing).
            victim = next((key for key, other in self._domains.items() if other is dom or other.templates), None)
            if victim is not None and self._domains[victim] is not dom:
                self._evict_domain(victim)
            elif dom.templates:  # only this domain holds templates: its own oldest goes
                self._drop_template(exporter, dom, next(iter(dom.templates)))
                self.evictions["template"] += 1
            else:
                break

    # -- feeding --------------------------------------------------------------------------------

    def feed(self, packet: bytes | bytearray | memoryview, exporter: str) -> None:
        """Decode one datagram's headers and templates; keep its data records for :meth:`take`."""
        st = self.stats.get(exporter)
        if st is None:
            st = self._new_stats(exporter)
        mv = memoryview(packet)
        st.packets += 1
        st.datagram_bytes += len(mv)
        try:
            if len(mv) < 4:
                raise _Bad("too short")
            version = U16.unpack_from(mv, 0)[0]
            if version == 5:
                self._v5(mv, exporter, st)
            elif version == 9:
                self._v9(mv, exporter, st)
            elif version == 10:
                self._ipfix(mv, exporter, st)
            else:
                raise _Bad("unknown version")
        except _Bad as bad:
            st.packet_errors[bad.reason] += 1
            return
        st.packets_decoded += 1
        st.versions[version] += 1

    def _v5(self, mv: memoryview, exporter: str, st: ExporterStats) -> None:
        if len(mv) < V5_HEADER.size:
            raise _Bad("truncated header")
        _, count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = V5_HEADER.unpack_from(mv, 0)
        if count == 0 or count > V5_MAX_COUNT:
            raise _Bad("bad count")
        end = V5_HEADER.size + count * V5_RECORD
        if len(mv) < end:
            raise _Bad("truncated")
        if len(mv) > end:
            raise _Bad("wrong length")
        export_us = secs * 1_000_000 + nsecs // 1000
        dom = self._domain(exporter, 5, (engine_type << 8) | engine_id)
        # The header's last 14 bits are the sampling interval (the first two its mode), as nfcapd reads them.
        dom.sampling = float(max(sampling & 0x3FFF, 1))
        self._add_set(exporter, V5_TEMPLATE, mv[V5_HEADER.size:end], count, export_us, uptime, -1, dom, st)
        self._sequence(dom, 5, seq, count, count, st)

    def _v9(self, mv: memoryview, exporter: str, st: ExporterStats) -> None:
        if len(mv) < V9_HEADER.size:
            raise _Bad("truncated header")
        _, _, uptime, secs, seq, domain = V9_HEADER.unpack_from(mv, 0)
        dom = self._domain(exporter, 9, domain)
        records, flows = self._sets(mv, V9_HEADER.size, len(mv), exporter, 9, dom, secs * 1_000_000, uptime, st)
        self._sequence(dom, 9, seq, records, flows, st)

    def _ipfix(self, mv: memoryview, exporter: str, st: ExporterStats) -> None:
        if len(mv) < IPFIX_HEADER.size:
            raise _Bad("truncated header")
        _, length, export_secs, seq, domain = IPFIX_HEADER.unpack_from(mv, 0)
        if length > len(mv):
            raise _Bad("truncated")
        if length != len(mv):
            raise _Bad("wrong length")
        dom = self._domain(exporter, 10, domain)
        records, flows = self._sets(mv, IPFIX_HEADER.size, length, exporter, 10, dom, export_secs * 1_000_000, -1, st)
        self._sequence(dom, 10, seq, records, flows, st)

    def _sets(self, mv: memoryview, pos: int, end: int, exporter: str, version: int, dom: _Domain,
              export_us: int, uptime: int, st: ExporterStats) -> tuple[int, int]:
        """Walk the sets of a v9/IPFIX datagram; returns (data records, flow data records)."""
        records = flows = 0
        complete = True
        template_set, options_set = (0, 1) if version == 9 else (2, 3)
        # v9 datagrams may end in a few bytes of padding; anything shorter than a set header is that.
        while end - pos >= 4:
            set_id, length = SET_HEADER.unpack_from(mv, pos)
            st.sets += 1
            if length < 4 or pos + length > end:
                st.set_errors["bad set length"] += 1
                complete = False
                break  # where the next set starts is unknown
            body = mv[pos + 4:pos + length]
            pos += length
            try:
                if set_id == template_set:
                    self._templates(body, exporter, version, dom, False, st)
                elif set_id == options_set:
                    self._templates(body, exporter, version, dom, True, st)
                elif set_id >= 256:
                    tpl = dom.templates.get(set_id)
                    if tpl is None:
                        raise _Bad("data before template")
                    dom.templates.move_to_end(set_id)
                    n = self._data(body, tpl, exporter, version, dom, export_us, uptime, st)
                    records += n
                    flows += 0 if tpl.options else n
                else:
                    raise _Bad("reserved set id")
            except _Bad as bad:
                st.set_errors[bad.reason] += 1
                continue
            st.sets_decoded += 1
        if version == 10 and complete and pos != end:
            # IPFIX sets fill the message exactly: 1-3 bytes left over are a broken set.
            st.sets += 1
            st.set_errors["bad set length"] += 1
        return records, flows

    def _templates(self, body: memoryview, exporter: str, version: int, dom: _Domain, options: bool,
                   st: ExporterStats) -> None:
        """Parse every template record of a (options) template set; the whole set or nothing."""
        parsed: list[Template | int] = []  # a Template, or a withdrawn template id
        pos, end = 0, len(body)
        header = 6 if options else 4
        while end - pos >= header:
            if body[pos] == 0 and body[pos + 1] == 0 and bytes(body[pos:]).count(0) == end - pos:
                break  # zero padding at the end of the set
            if options and version == 9:
                tid, scope_len, option_len = U16x3.unpack_from(body, pos)
                pos += 6
                if scope_len % 4 or option_len % 4 or pos + scope_len + option_len > end:
                    raise _Bad("bad template")
                n_fields, n_scope = (scope_len + option_len) // 4, scope_len // 4
            elif options:
                tid, n_fields, n_scope = U16x3.unpack_from(body, pos)
                pos += 6
                if n_scope == 0 or n_scope > n_fields:
                    raise _Bad("bad template")
            else:
                tid, n_fields = U16x2.unpack_from(body, pos)
                pos += 4
                n_scope = 0
            if tid < 256:
                raise _Bad("bad template")
            if n_fields == 0:
                if version == 10 and not options:
                    parsed.append(tid)  # withdrawal
                    continue
                raise _Bad("bad template")
            if n_fields > self.max_template_fields:
                raise _Bad("template too large")
            fields: list[tuple[int | tuple[int, int], int]] = []
            for _ in range(n_fields):
                if pos + 4 > end:
                    raise _Bad("bad template")
                element, length = U16x2.unpack_from(body, pos)
                pos += 4
                if version == 10 and element & 0x8000:
                    if pos + 4 > end:
                        raise _Bad("bad template")
                    element = (U32.unpack_from(body, pos)[0], element & 0x7FFF)  # type: ignore[assignment]
                    pos += 4
                if length == 0 or (length == VARIABLE and version == 9):
                    raise _Bad("bad template")
                fields.append((element, length))
            old = dom.templates.get(tid)
            if old is not None and old.defines(tuple(fields), options, n_scope):
                parsed.append(old)  # a refresh (exporters resend templates every few seconds): nothing to build
            else:
                parsed.append(build_template(version, tid, fields, options, n_scope))
        for item in parsed:
            if isinstance(item, int):
                if self._drop_template(exporter, dom, item) is not None:
                    st.template_withdrawals += 1
                continue
            tid = item.template_id
            st.template_records += 1
            old = dom.templates.get(tid)
            if old is not None and old.defines(item.fields, item.options, item.scope_count):
                dom.templates.move_to_end(tid)
                continue  # a refresh: exporters resend their templates periodically
            if old is not None:
                self._drop_template(exporter, dom, tid)
                st.template_redefinitions += 1
            # Template ids and domains come from the network: what they hold is bounded. A
            # redefinition with more fields needs room too (benchmarks/fuzz.py found one that did
            # not make it, and held a field more than max_fields).
            self._make_room(exporter, dom, len(item.fields))
            self._held_change(exporter, 1)
            st.unknown_fields += item.unknown_fields
            dom.templates[tid] = item
            dom.fields += len(item.fields)
            self.template_count += 1
            self.field_count += len(item.fields)

    def _data(self, body: memoryview, tpl: Template, exporter: str, version: int, dom: _Domain,
              export_us: int, uptime: int, st: ExporterStats) -> int:
        if tpl.variable:
            data, n = self._pack_variable(body, tpl)
        else:
            length = tpl.length or 1
            n = len(body) // length
            if n == 0:
                raise _Bad("data shorter than a record")
            # The remainder (less than one record) is padding.
            data = body[:n * length]
        if tpl.options:
            st.options_records += n
            used = version == 10 and 160 in tpl.columns
            if used or tpl.sampling:
                records = np.frombuffer(bytes(data), tpl.dtype)
                if used:
                    # Clipped like absolute times: a clock past 2100 makes the records' times absurd.
                    dom.init_ms = min(int(records[tpl.columns[160]][-1]), MAX_MS)
                if tpl.sampling:
                    self._sampling_options(records, tpl, dom)
            return n
        init = dom.init_ms if version == 10 else -1
        self._add_set(exporter, tpl, data, n, export_us, uptime, init, dom, st)
        return n

    def _sampling_options(self, records: np.ndarray, tpl: Template, dom: _Domain) -> None:
        """Options records that state a sampling: for the sampler they name, else the domain's."""
        rates = sampling_of(records, tpl)
        ids = sampler_of(records, tpl)
        if rates is None:
            return
        if ids is None:
            dom.sampling = float(rates[-1])
            return
        for sampler, rate in zip(ids.tolist(), rates.tolist()):
            dom.samplers[sampler] = rate
            dom.samplers.move_to_end(sampler)
            if len(dom.samplers) > self.max_samplers_per_domain:
                dom.samplers.popitem(last=False)
                self.evictions["sampler"] += 1
        dom.sampler_table = SamplerTable.of(dom.samplers)

    @staticmethod
    def _pack_variable(body: memoryview, tpl: Template) -> tuple[bytes, int]:
        """Records of a template with variable-length fields, packed into its fixed layout.

        Record by record (the slow path): each field's length is read from the record.
        """
        out = bytearray()
        wanted = {int(name[1:]) for name in tpl.columns.values()}
        pos, end, n = 0, len(body), 0
        while end - pos >= tpl.min_length:
            record = bytearray()
            for i, (_, length) in enumerate(tpl.fields):
                if length == VARIABLE:
                    if pos + 1 > end:
                        raise _Bad("truncated record")
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            raise _Bad("truncated record")
                        length = U16.unpack_from(body, pos)[0]
                        pos += 2
                    if pos + length > end:
                        raise _Bad("truncated record")
                    pos += length
                    continue
                if pos + length > end:
                    raise _Bad("truncated record")
                if i in wanted:
                    record += body[pos:pos + length]
                pos += length
            out += record if record else b"\0"
            n += 1
        if n == 0:
            raise _Bad("data shorter than a record")
        return bytes(out), n

    def _add_set(self, exporter: str, tpl: Template, data: memoryview | bytes, n: int, export_us: int,
                 uptime: int, init_ms: int, dom: _Domain, st: ExporterStats) -> None:
        first = st.records + 1  # record numbers per address
        by_template = self._pending.setdefault(exporter, {})
        # The sampling in force when the set came (a later options record changes later sets only).
        samplers = dom.sampler_table if tpl.sampler else None
        by_template.setdefault(tpl, []).append(PendingSet(bytes(data), n, export_us, uptime, init_ms, first, dom.sampling, samplers))
        st.records += n
        self.pending_records += n

    def _sequence(self, dom: _Domain, version: int, seq: int, records: int, flows: int, st: ExporterStats) -> None:
        stream = dom.stream
        if stream is None:
            dom.stream = _Stream(seq, records, flows, tuple(_CONVENTIONS[version]))
            return
        # The conventions every packet so far agrees with; a gap is measured by the first of them.
        expected = {name: _CONVENTIONS[version][name](stream, records, flows) & 0xFFFFFFFF for name in stream.conventions}
        matching = tuple(name for name, value in expected.items() if value == seq)
        if matching:
            stream.conventions = matching
            gap = 0
        else:
            gap = (seq - expected[stream.conventions[0]]) & 0xFFFFFFFF
        if gap:
            if gap < 1 << 31:
                st.sequence_gaps += 1
                if SEQUENCE_UNITS[version] == "packets":
                    st.lost_packets += gap
                else:
                    st.lost_records += gap
            else:
                st.sequence_resets += 1
        stream.seq, stream.records, stream.flow_records = seq, records, flows

    # -- taking ---------------------------------------------------------------------------------

    def take(self) -> Checked:
        """Flows (validated) and rejects of all records fed since the last call."""
        pending, self._pending, self.pending_records = self._pending, {}, 0
        flows: list[pl.DataFrame] = []
        rejects: list[pl.DataFrame] = []
        for exporter, by_template in pending.items():
            st = self._stats(exporter)
            decoded = [decode_records(tpl, sets) for tpl, sets in by_template.items()]
            candidates = pl.concat([frame for frame, _ in decoded], how="vertical")
            for _, sampled in decoded:
                for rate, count in sampled.items():
                    # 1 in 100 as "100"; (N + M) / N sampling as its ratio, e.g. "2.5".
                    st.sampled[str(int(rate)) if rate.is_integer() else f"{rate:.6g}"] += count
            checked = check(candidates.sort("source_row"), f"udp://{exporter}", canonical_ips=True)
            flows.append(checked.flows)
            rejects.append(checked.rejects)
            st.flows += checked.flows.height
            if checked.flows.height:
                st.flow_packets += int(checked.flows["fwd_packets"].sum())
                st.flow_bytes += int(checked.flows["fwd_bytes"].sum())
            if checked.rejects.height:
                for reason, count in checked.rejects.group_by("reason").len().iter_rows():
                    st.rejected[reason_kind(reason)] += count
        if not flows:
            return Checked(empty_flows(), pl.DataFrame(schema=REJECT_SCHEMA))
        return Checked(pl.concat(flows, how="vertical"), pl.concat(rejects, how="vertical"))


