"""The data that crosses the ports: a LibreLink Up login, what it returns, where readings go and the
secret's content. Plain frozen records with no behaviour beyond their own fields; they import nothing of
the package but the readings, so every module (the ports included) can name them without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .readings import Reading

# Re-login a day before the 180-day ticket expires, so a run never starts with a ticket that dies mid-run.
TICKET_RENEW_MARGIN_S = 24 * 3600


@dataclass(frozen=True)
class Ticket:
    """A LibreLink Up login: valid for 180 days, usable only on the host (region) that issued it."""

    token: str
    expires: int  # Unix seconds
    user_id: str
    account_id: str  # lower-case hex SHA-256 of user_id, sent as the Account-Id header
    region: str  # lower-case region key of the host that issued the ticket

    def usable_at(self, now: float) -> bool:
        return now < self.expires - TICKET_RENEW_MARGIN_S

    def __repr__(self) -> str:  # never show the token or the Account-Id
        return f"Ticket(region={self.region!r}, expires={self.expires})"


@dataclass(frozen=True)
class Sensor:
    serial: str
    activated_at: int  # Unix seconds


@dataclass(frozen=True)
class Connection:
    """One person the follower account follows."""

    patient_id: str
    initials: str = ""  # for doctor output only; never logged
    sensor: Sensor | None = None


@dataclass(frozen=True)
class Graph:
    """What one graph request returned: the current reading plus ~12 h of history."""

    patient_id: str
    current: Reading | None
    history: tuple[Reading, ...]
    sensor: Sensor | None = None
    skipped_items: int = 0  # malformed items that were left out (each logged as a warning)
    # readings left out as implausible: a value no sensor gives, or (plausibility.py) a date outside the run's window
    implausible_items: int = 0
    initials: str = ""  # the person's initials, for alerts in a stack serving several; never logged


@dataclass(frozen=True)
class Existing:
    """The sgv entries Nightscout already holds in a window, from any device (one read request).

    `instants` are epoch seconds. `complete_since_ms` is where the answer is known to be complete: the
    start of the window, or the oldest entry returned when the answer filled its page (then older
    entries may exist that were not returned).
    """

    instants: tuple[int, ...]
    complete_since_ms: int


@dataclass(frozen=True)
class Target:
    """Where one followed patient's readings go. `patient_id` None: the only (or first) one followed."""

    patient_id: str | None
    nightscout_url: str
    nightscout_token: str = field(repr=False)
    api_v3: bool | None = None  # None: the NIGHTSCOUT_API_V3 setting decides
    entry: int | None = None  # its number in the secret's TARGETS list (None: the flat form)


@dataclass(frozen=True)
class Credentials:
    """The secret's content. `version` changes whenever the secret is changed."""

    username: str
    password: str = field(repr=False)
    targets: tuple[Target, ...]
    version: str = ""

    @property
    def nightscout_url(self) -> str:
        return self.targets[0].nightscout_url

    @property
    def nightscout_token(self) -> str:
        return self.targets[0].nightscout_token
