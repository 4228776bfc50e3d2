"""What an injection is asked for and what it did: intensities, the run's configuration, the
attack captures used and the ground truth of each injection (``inject.py`` does the work, its
docstring gives the method).
"""

from __future__ import annotations

import enum
import ipaddress
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from netflowgen.artifacts import Summary
from netflowgen.read.filter import compile_filter
from netflowgen.series.nodes import DEFAULT_LOCAL_PREFIXES

__all__ = ["EPOCH", "MICROSECOND", "NAT64_PREFIX", "AttackCapture", "InjectConfig", "InjectSummary", "Injection", "Intensity",
           "IntensityMode", "address_family", "attack_type_of", "parse_time"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
#: Suffixes of compressed inputs (a name's type is read without them).
_COMPRESSED = (".gz", ".zst", ".zstd", ".zip", ".bz2", ".xz")


class IntensityMode(str, enum.Enum):
    """How an intensity is measured."""

    FRACTION = "fraction"
    """The fraction of the capture's flows to keep."""
    VICTIM_RATE = "victim-rate"
    """A multiple of the victim's median flows per step in the background."""


@dataclass(frozen=True)
class Intensity:
    """How much of an attack capture to inject (see the module docstring).

    >>> Intensity.parse("0.25"), Intensity.parse("2x")
    (Intensity(value=0.25, mode=<IntensityMode.FRACTION: 'fraction'>), Intensity(value=2.0, mode=<IntensityMode.VICTIM_RATE: 'victim-rate'>))
    >>> str(Intensity.parse("1.5X")), str(Intensity(1.0))
    ('1.5x', '1')
    """

    value: float
    mode: IntensityMode = IntensityMode.FRACTION

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"intensity must be a positive number, got {self.value}")
        if self.mode is IntensityMode.FRACTION and self.value > 1:
            raise ValueError(
                f"intensity {self.value:g} is a fraction above 1: the capture cannot be sampled beyond its "
                f"flows; write {self.value:g}x for {self.value:g} times the victim's usual rate"
            )

    @classmethod
    def parse(cls, text: str) -> Intensity:
        """``0.25`` (a fraction of the capture's flows) or ``2x`` (times the victim's median rate)."""
        t = text.strip().lower()
        mode = IntensityMode.VICTIM_RATE if t.endswith("x") else IntensityMode.FRACTION
        number = t[:-1] if mode is IntensityMode.VICTIM_RATE else t
        try:
            value = float(number)
        except ValueError as e:
            raise ValueError(f"not an intensity: {text!r} (use a fraction like 0.25 or a multiple like 2x)") from e
        return cls(value, mode)

    def __str__(self) -> str:
        return f"{self.value:.15g}x" if self.mode is IntensityMode.VICTIM_RATE else f"{self.value:.15g}"


def attack_type_of(path: str | Path) -> str:
    """The default ``label_detail`` of an attack capture: its file name without compression
    suffix and extension.

    >>> attack_type_of("stopddos/amp.UDP.snmp.src161.pcapng"), attack_type_of("syn.parquet.gz")
    ('amp.UDP.snmp.src161', 'syn')
    """
    name = Path(path).name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return Path(name).stem if "." in name else name


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (no zone: UTC) or Unix epoch seconds, as an aware UTC datetime.

    >>> parse_time("2018-12-21T15:00:00"), parse_time("1545404400.5")
    (datetime.datetime(2018, 12, 21, 15, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2018, 12, 21, 15, 0, 0, 500000, tzinfo=datetime.timezone.utc))
    """
    t = text.strip()
    try:
        seconds = float(t)
    except ValueError:
        pass
    else:
        return EPOCH + timedelta(microseconds=round(seconds * 1e6))
    try:
        value = datetime.fromisoformat(t)
    except ValueError as e:
        raise ValueError(f"not a time: {text!r} (use ISO 8601, e.g. 2018-12-21T15:00:00, UTC unless a zone is given)") from e
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError as e:
        raise ValueError(f"{what}: not an IP address: {text!r}") from e


#: RFC 6052's well-known prefix for IPv4-embedded IPv6 addresses (NAT64): 64:ff9b::/96.
NAT64_PREFIX = int(ipaddress.IPv6Address("64:ff9b::"))


def address_family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


@dataclass(frozen=True)
class InjectConfig:
    """What to inject onto what (the combination rules are in the module docstring)."""

    background: Path
    """Benign background flows: an ingested dataset (streamed) or any supported input."""
    attacks: tuple[Path, ...]
    """Attack flows, one capture per entry: datasets or any supported input (pcaps included)."""
    background_filter: str | None = None
    """nfdump filter expression: only the background flows it matches are kept (see
    :mod:`netflowgen.read.filter`); a filtered dataset is rewritten, not copied."""
    victims: tuple[str, ...] = ()
    """Addresses to attack; each must occur in the background. Exclusive with ``n_victims``."""
    n_victims: int | None = None
    """Draw this many victims among the background's local nodes."""
    times: tuple[datetime, ...] = ()
    """Times at which an attack's first flow starts (UTC). Exclusive with ``n_times``."""
    n_times: int | None = None
    """Draw this many start times per victim, uniformly where the whole attack fits."""
    intensities: tuple[Intensity, ...] = (Intensity(1.0),)
    """Cycled over the injections."""
    seed: int = 0
    """Seed of every random draw (victims, attacks, times, sampled flows)."""
    label: str = "DDoS"
    """``label`` of injected flows."""
    attack_types: tuple[str, ...] = ()
    """``label_detail`` of injected flows: none (each file's stem), one for all, or one per attack."""
    attack_victim: str | None = None
    """The captures' own victim, instead of the address receiving most of their flows."""
    local_prefixes: tuple[str, ...] = DEFAULT_LOCAL_PREFIXES
    """Where drawn victims come from."""
    rate_step: timedelta = timedelta(seconds=60)
    """Step over which flows per step are counted for ``Nx`` intensities (aligned to the epoch)."""
    schedule: tuple[tuple[str, datetime], ...] = ()
    """Explicit (victim, start time) pairs, one injection each, instead of victims x times
    (exclusive with ``victims``, ``n_victims``, ``times`` and ``n_times``)."""
    translate_family: bool = False
    """Also place IPv4 captures onto IPv6 victims: the attackers' IPv4 addresses become IPv6 ones
    under 64:ff9b::/96 (RFC 6052, the NAT64 well-known prefix) and ICMP becomes ICMPv6, as the
    attack would look behind a NAT64 gateway; packets and bytes are kept as captured."""
    within_coverage: bool = False
    """Drop injected flows that end outside the background's coverage (the time its inputs
    observed): an archive with holes would not hold them either. Counted per injection."""
    overwrite: bool = False
    """Replace the output if it exists (atomically: the old one stays until the new one is complete)."""

    def __post_init__(self) -> None:
        if self.background_filter is not None:
            compile_filter(self.background_filter)  # a bad expression fails before anything is read
        if not self.attacks:
            raise ValueError("no attack to inject: give at least one --attack")
        if self.schedule:
            if self.victims or self.n_victims is not None or self.times or self.n_times is not None:
                raise ValueError("a schedule of (victim, time) pairs replaces victims and times: give one or the other")
            pairs = []
            for victim, t in self.schedule:
                if t.tzinfo is None:
                    raise ValueError(f"start time {t} has no time zone; use parse_time() or an aware datetime")
                pairs.append((normalize_ip(victim, "victim"), t.astimezone(UTC)))
            object.__setattr__(self, "schedule", tuple(pairs))
        elif bool(self.victims) == (self.n_victims is not None):
            raise ValueError("give either victims (--victim IP, repeatable) or a number to draw (--victims N), not both")
        if not self.schedule and bool(self.times) == (self.n_times is not None):
            raise ValueError("give either start times (--at TIME, repeatable) or a number to draw (--times N), not both")
        for name in ("n_victims", "n_times"):
            n = getattr(self, name)
            if n is not None and n < 1:
                raise ValueError(f"{name} must be at least 1, got {n}")
        if not self.intensities:
            raise ValueError("give at least one intensity")
        if not self.label:
            raise ValueError("the label of injected flows cannot be empty")
        if len(self.attack_types) not in (0, 1, len(self.attacks)):
            raise ValueError(
                f"{len(self.attack_types)} attack types for {len(self.attacks)} attacks: give none, one for all, or one per attack"
            )
        if self.rate_step <= timedelta(0) or self.rate_step % MICROSECOND:
            raise ValueError(f"rate_step must be a positive whole number of microseconds, got {self.rate_step}")
        victims = tuple(normalize_ip(v, "victim") for v in self.victims)
        if len(set(victims)) != len(victims):
            raise ValueError(f"a victim is given twice: {list(self.victims)}")
        object.__setattr__(self, "victims", victims)
        if self.attack_victim is not None:
            object.__setattr__(self, "attack_victim", normalize_ip(self.attack_victim, "attack victim"))
        for t in self.times:
            if t.tzinfo is None:
                raise ValueError(f"start time {t} has no time zone; use parse_time() or an aware datetime")
        object.__setattr__(self, "times", tuple(t.astimezone(UTC) for t in self.times))

    def attack_type(self, index: int) -> str:
        """``label_detail`` of the injections of attack ``index``.

        >>> InjectConfig(Path("bg"), (Path("a/amp.UDP.snmp.src161.pcapng"),), n_victims=1, n_times=1).attack_type(0)
        'amp.UDP.snmp.src161'
        """
        if self.attack_types:
            return self.attack_types[index if len(self.attack_types) > 1 else 0]
        return attack_type_of(self.attacks[index])

    def to_dict(self) -> dict[str, object]:
        """Every parameter, JSON-ready (the manifest stores it)."""
        return {
            "background": str(self.background),
            "attacks": [str(p) for p in self.attacks],
            "victims": list(self.victims),
            "n_victims": self.n_victims,
            "times": [t.isoformat() for t in self.times],
            "n_times": self.n_times,
            "intensities": [str(i) for i in self.intensities],
            "seed": self.seed,
            "label": self.label,
            "attack_types": [self.attack_type(i) for i in range(len(self.attacks))],
            "attack_victim": self.attack_victim,
            "local_prefixes": list(self.local_prefixes),
            "rate_step_seconds": self.rate_step.total_seconds(),
            "schedule": [[v, t.isoformat()] for v, t in self.schedule],
            "within_coverage": self.within_coverage,
            "translate_family": self.translate_family,
        }


@dataclass
class AttackCapture:
    """What was read from one attack input."""

    path: str
    attack_type: str
    formats: list[str]
    rows_read: int
    rows_rejected: int
    victim: str
    victim_given: bool
    flows: int
    """Flows from or to the victim: what injections sample from."""
    flows_left_out: int
    """Flows that neither come from nor go to the victim (not injected)."""
    first_start: str
    last_end: str
    duration_seconds: float


@dataclass
class Injection:
    """One row of ``injections.csv``: the ground truth of one injection."""

    id: int
    victim: str
    attack_file: str
    attack_type: str
    original_victim: str
    at: str
    """When the capture's first flow was placed (ISO 8601, UTC)."""
    start: str
    """First start of the injected flows (later than ``at`` when sampling left out the first)."""
    end: str
    """Last end of the injected flows."""
    intensity: str
    fraction: float
    """Fraction of the capture's flows kept."""
    flows: int
    packets: int
    bytes: int
    capture_flows: int
    victim_median_per_step: float
    """The victim's median flows per step over its active steps in the background."""
    capture_median_per_step: float
    """The whole capture's median flows per step over its active steps, where it was placed."""
    injected_median_per_step: float
    """The same for the injected (sampled) flows."""
    flows_outside_coverage: int = 0
    """Sampled flows dropped because they end outside the background's coverage (``within_coverage``)."""


@dataclass
class InjectSummary(Summary):
    """What an injection run did; also stored in the dataset's manifest."""

    out: str
    seed: int
    background_rows: int = 0
    injected_rows: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    packets: int = 0
    bytes: int = 0
    first_start: str | None = None
    last_end: str | None = None
    label_counts: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    inputs: list[dict[str, object]] = field(default_factory=list)
    attacks: list[AttackCapture] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    seconds: float = 0.0

