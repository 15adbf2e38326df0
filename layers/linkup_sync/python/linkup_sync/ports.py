"""Every interface between the sync service and the outside world, and nothing else.

The sync service (sync.py) and the incident desk (incidents/desk.py) only talk to these. Adapters
implement them with urllib3, DynamoDB, SNS, SQS and Secrets Manager; tests implement them with fakes.
Nothing outside `librelinkup/` knows LibreLink Up's JSON, and nothing outside `nightscout/` knows
Nightscout's.

A capability only some implementations have is a protocol of its own (`Announcer`, `HoldsJwt`,
`RefreshableCredentials`), asked with `isinstance`, never probed with `getattr`. The data these
interfaces carry lives in data modules that import no interface (model.py, state/model.py,
incidents/model.py), so no import cycle runs through this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from .incidents.model import Incident, IncidentRecord
from .model import Connection, Credentials, Existing, Graph, Ticket
from .readings import Reading
from .state.model import AccountState, IncidentKey, StoredState, TargetState

# --- LibreLink Up and Nightscout -------------------------------------------------------------------------


class LinkUpSource(Protocol):
    version: str  # the app version sent in the "version" header; LINK_UP_VERSION=auto may change it

    def login(self, username: str, password: str, region: str) -> Ticket:
        """Log in, following region redirects. Raises a LinkUpError subclass on failure."""
        ...

    def connections(self, ticket: Ticket) -> list[Connection]: ...

    def graph(self, ticket: Ticket, patient_id: str) -> Graph: ...


class NightscoutSink(Protocol):
    requests_made: int

    def upload(self, readings: Sequence[Reading]) -> int:
        """Send readings (never empty, oldest first). Returns how many Nightscout acknowledged.

        Returns only when Nightscout accepted them all; raises a NightscoutError otherwise
        (NightscoutPartialUpload names the ones it did accept).
        """
        ...

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        """One "Sensor Start" treatment at the activation time; re-posting the same one is harmless."""
        ...

    def existing_sgv(self, since_ms: int) -> Existing:
        """One request: the sgv entries of any device dated at or after `since_ms` (epoch ms).

        Raises a NightscoutError when Nightscout cannot tell (then nothing may be assumed about them).
        """
        ...


@runtime_checkable
class Announcer(Protocol):
    """A Nightscout site that can show an announcement (the real uploaders; not the command line's dry run)."""

    def post_announcement(self, *, text: str, at_ms: int) -> None:
        """Post one Nightscout Announcement treatment. Raises a NightscoutError on failure."""
        ...


class JwtCache(Protocol):
    """Where API v3's JWT is kept between runs (e.g. the DynamoDB state), so it survives cold starts."""

    def get(self) -> tuple[str, int] | None:
        """(jwt, exp in Unix seconds), or None."""
        ...

    def put(self, jwt: str, exp: int) -> None: ...


@runtime_checkable
class HoldsJwt(Protocol):
    """A Nightscout sink that exchanged its token for a JWT (API v3): the sync service stores it back."""

    @property
    def jwt_cache(self) -> JwtCache | None: ...


# --- time, state and secrets -----------------------------------------------------------------------------


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch."""
        ...


class StateStore(Protocol):
    def load(self, key: str) -> StoredState:
        """Everything stored for one follower account, in one read."""
        ...

    def save_account(self, key: str, account: AccountState) -> AccountState:
        """Store the account item if nobody changed it since `account.rev`; returns the stored version.

        Also releases the login lock.
        """
        ...

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        """Take the account's login lock unless another run holds it: never two logins in flight."""
        ...

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        """Add accepted instants to the target's ledger (and store its other fields) in one conditional write.

        The write is a union with whatever is stored, so it can never move the ledger backwards, even
        when another run wrote in between (then it re-reads and merges).
        """
        ...

    def mark_incidents(self, key: str, opened: Iterable[IncidentKey], closed: Iterable[IncidentKey]) -> None:
        """Note incidents as open and as closed in the account's marker (StoredState.incidents_open), in
        one unconditional write. Per incident, not the whole set: of two runs writing at once (one opened
        an incident, the other closed another) both changes stay."""
        ...


class Sealer(Protocol):
    """Encrypts what a state item must not hold in clear, for the account the state key belongs to.
    `open` raises state.dynamodb.SealedStateLost for a ciphertext that no retry can open."""

    def seal(self, key: str, plaintext: bytes) -> bytes: ...

    def open(self, key: str, ciphertext: bytes) -> bytes: ...


class CredentialSource(Protocol):
    def get(self) -> Credentials: ...


@runtime_checkable
class RefreshableCredentials(Protocol):
    """Credentials kept between runs that can be read afresh on the next one (the secret may be what is wrong)."""

    def get(self) -> Credentials: ...

    def refresh_next(self) -> None: ...


# --- incidents -------------------------------------------------------------------------------------------


class IncidentStore(Protocol):
    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        """Every stored incident; also refreshes `people` (scope -> initials), stored alongside."""
        ...

    @property
    def people(self) -> dict[str, str]: ...

    def remember_people(self, people: dict[str, str]) -> None: ...

    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        """Open (or re-open a closed) incident; returns the record only to the run that opened it."""
        ...

    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        """Take `slot` of this opening unless another run has; True for exactly one run."""
        ...

    def release(self, record: IncidentRecord, slot: str) -> None:
        """Give a claimed slot back (the message could not be sent): the next run tries again."""
        ...

    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        """Claim a reminder: True for exactly one run once the last e-mail is older than `cutoff`."""
        ...

    def close(self, record: IncidentRecord, now: int) -> bool:
        """Close this opening; True for exactly one run."""
        ...


class AlertPublisher(Protocol):
    def publish(self, subject: str, body: str) -> None:
        """Send one e-mail to the alert topic. Raises on failure."""
        ...


# --- the hosted stack ------------------------------------------------------------------------------------


class Queue(Protocol):
    def send_batch(self, entries: Sequence[tuple[str, int]]) -> int:
        """Send (body, delay seconds) entries, at most ten; the number SQS did not accept."""
        ...
