"""What is remembered, keyed by follower account and patient.

One account item holds what belongs to the LibreLink Up login (ticket, chosen patient); one target item
per patient holds what was uploaded to that patient's Nightscout. A run reads all of an account's items
in one request and normally writes only its target item, so the work of a run does not depend on how
many other accounts the table holds.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..model import Ticket
from ..selection import merge_ledger
from ..trends import Point, remember


def account_key(username: str) -> str:
    """Partition key of a follower account. The e-mail address itself is not stored."""
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"acct#{digest}"


# A packed ledger starts with this marker; the first format (4 bytes per instant, big-endian) cannot,
# since its first bytes are a timestamp after 1970. Both are read, only the packed one is written.
_PACKED = b"\x00\x01"


def pack_ledger(instants: Iterable[int]) -> bytes:
    """The sorted instants as zlib-compressed varint deltas: ~150 bytes for 13 hours of readings.

    DynamoDB bills writes per started KB of the whole item, and the target item is written on every
    run with new readings: 4 bytes per instant put it near 1 KB, which costs twice at every write.
    """
    values = sorted(set(instants))
    out = bytearray()
    previous = 0
    for value in values:
        delta = value - previous
        previous = value
        while True:
            byte = delta & 0x7F
            delta >>= 7
            out.append(byte | (0x80 if delta else 0))
            if not delta:
                break
    return _PACKED + zlib.compress(bytes(out), 9)


def unpack_ledger(data: bytes) -> tuple[int, ...]:
    if data.startswith(_PACKED):
        try:
            raw = zlib.decompress(data[len(_PACKED) :])
        except zlib.error:
            raise ValueError("ledger is not a packed ledger") from None
        values: list[int] = []
        current = shift = delta = 0
        for byte in raw:
            delta |= (byte & 0x7F) << shift
            if byte & 0x80:
                shift += 7
                continue
            current += delta
            values.append(current)
            delta = shift = 0
        if shift:
            raise ValueError("ledger ends inside a number")
        return tuple(values)
    if len(data) % 4:
        raise ValueError("ledger length is not a multiple of 4")
    return tuple(sorted(struct.unpack(f">{len(data) // 4}I", data)))


@dataclass(frozen=True)
class AccountState:
    """What belongs to the LibreLink Up login, including the circuit breakers that protect the account.

    The breakers live here, not in memory, so they hold across cold starts and concurrent containers.
    """

    ticket: Ticket | None = None
    region: str | None = None  # the region that last issued a ticket: the next login starts there
    patient_id: str | None = None
    # Bad credentials: no login while the secret still has this version and these credentials (one
    # attempt per secret version, and one per changed username or password: fingerprint.py).
    bad_credentials_version: str | None = None
    bad_credentials_tag: str | None = field(default=None, repr=False)
    # The fingerprint of the credentials the ticket and patient_id were obtained with: other credentials
    # never use them (a replaced password logs in, and meets the bad-password breaker if it is wrong).
    creds_tag: str | None = field(default=None, repr=False)
    # Locked account or an action the person must take: no login before this time.
    login_not_before: int | None = None
    login_block_reason: str | None = None
    # Rate limits, edge blocks, maintenance, server errors: no LibreLink Up request before this time.
    backoff_until: int | None = None
    backoff_failures: int = 0
    backoff_reason: str | None = None
    # LINK_UP_VERSION=auto: the minimum version LibreLink Up asked for (adopted, used from then on).
    version: str | None = None
    # A version LibreLink Up refused (pinned, or a 5.x minimum): no request with it before
    # version_retry_at (an hour later); a changed LINK_UP_VERSION ends the wait at once.
    rejected_version: str | None = None
    version_retry_at: int | None = None
    rev: int = 0  # optimistic-concurrency counter of the stored item; 0 = not stored yet


def site_digest(nightscout_url: str) -> str:
    """A Nightscout site as a short digest (its URL is never stored or logged): one per site, whatever
    the case, surrounding spaces or trailing slash."""
    return hashlib.sha256(nightscout_url.strip().rstrip("/").lower().encode()).hexdigest()[:10]


def target_id(patient_id: str, nightscout_url: str) -> str:
    """One patient's readings going to one Nightscout site. The site appears only as a short digest."""
    return f"{patient_id}#{site_digest(nightscout_url)}"


@dataclass(frozen=True)
class TargetState:
    target_id: str
    # sorted epoch seconds of readings Nightscout accepted, and of entries a gap-filling run found already
    # there (from any uploader): the instants Nightscout is known to hold
    uploaded: tuple[int, ...] = ()
    sensor: str | None = None  # "<serial>@<activation>" of the last Sensor Start Nightscout accepted
    jwt: str | None = field(default=None, repr=False)  # API v3: Nightscout's 8-hour token, reused
    jwt_exp: int | None = None
    # Until when (epoch s) a read-back saw what Nightscout holds: later runs fill gaps up to here without
    # asking again (the lag of LibreLink Up's history would otherwise cost a read on the next few runs).
    checked_until: int | None = None
    # The last 15 minutes of current readings (epoch s, mg/dL): the rate behind a current reading's
    # arrow, since the history points lag 15 minutes and more (trends.py).
    recent: tuple[Point, ...] = ()
    rev: int = 0

    @property
    def newest(self) -> int | None:
        return self.uploaded[-1] if self.uploaded else None

    def with_uploaded(self, added: Iterable[int]) -> TargetState:
        return replace(self, uploaded=merge_ledger(self.uploaded, added))

    def with_recent(self, added: Iterable[Point]) -> TargetState:
        """A union with `added` (another run's, or this run's current reading), pruned to 15 minutes."""
        return replace(self, recent=remember(self.recent, added))

    def checked_at_least(self, other: int | None) -> TargetState:
        """Never move the read-back horizon backwards (two runs may record in either order)."""
        if other is None or (self.checked_until is not None and self.checked_until >= other):
            return self
        return replace(self, checked_until=other)


IncidentKey = tuple[str, str]  # (kind, scope) of an incident, as incidents.Incident.key


@dataclass(frozen=True)
class StoredState:
    key: str
    account: AccountState = field(default_factory=AccountState)
    targets: dict[str, TargetState] = field(default_factory=dict)
    # The incidents the last run that read them left open (the marker beside the account's items): read
    # with the state in the same request, so a warm container learns of an incident another one opened
    # without reading the incidents on every run.
    incidents_open: frozenset[IncidentKey] = frozenset()

    def target(self, target_id: str) -> TargetState:
        return self.targets.get(target_id) or TargetState(target_id=target_id)
