"""Incidents a person must act on, told once: by e-mail (the stack's SNS topic) and in Nightscout.

An incident is a (kind, scope) pair: `kind` names what is wrong (bad_credentials, action_required, ...),
`scope` whom it concerns ("" = everybody the stack serves, else a patient's short hash). Its lifecycle
lives in the state store (IncidentStore), so what was already told survives cold starts, and every
message is sent only by the run that won a conditional write ("claimed the slot"): two overlapping runs
can never both send it.

Per incident at most: one e-mail when it opens, one reminder per 24 hours while it stays open, one
all-clear e-mail when it is solved; one Nightscout announcement when it opens and one when it is solved.
A message that could not be sent (SNS or Nightscout unreachable) gives its slot back and the next run
tries again; a Nightscout that refuses announcements (the token lacks treatment permissions) gets a
single warning in the log for the incident and no further attempts.

No text here may carry a password, token, secret or hash of one: the texts are built from the typed
errors' messages, which are written without them (errors.py), and from fixed wording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from .errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkupSyncError,
    LinkUpVersionRejected,
    NightscoutError,
    NightscoutRejected,
    NightscoutUnauthorized,
)

log = logging.getLogger("linkup_sync")

REMINDER_AFTER_S = 24 * 3600
SUBJECT_MAX = 99  # SNS refuses subjects of 100 characters or more

# The slots of an incident: each message is sent by the run that claimed its slot.
# Announcement slots are per Nightscout site: "ann_open:<site digest>".
EMAIL_OPEN, EMAIL_CLEAR, ANN_OPEN, ANN_CLEAR = "email_open", "email_clear", "ann_open", "ann_clear"
ANN_REFUSED = "ann_refused"  # that site refused announcements for this opening: no more attempts

# Kinds whose cause is at LibreLink Up or in the secret: solved when readings flow from LibreLink Up again.
ACCOUNT_KINDS = ("bad_credentials", "action_required", "version", "api_retired", "patient_gone", "secret")


@dataclass(frozen=True)
class Incident:
    """What one run saw go wrong, with the words for the person."""

    kind: str
    scope: str  # "" = the whole stack; else the patient's short hash
    title: str  # short and specific: the e-mail subject and the announcement's first words
    what: str  # what happened, in full
    todo: str  # what to do: the app step, the setting or the command
    person: str = ""  # initials, only in a stack that serves several people
    email: bool = True
    announce: bool = True  # False for Nightscout-side incidents: Nightscout cannot show them

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.scope)


@dataclass(frozen=True)
class IncidentRecord:
    """An incident as stored. `gen` counts its openings; a slot holds the Unix time it was claimed."""

    kind: str
    scope: str
    gen: int
    opened_at: int
    title: str
    what: str
    todo: str
    person: str = ""
    email: bool = True
    announce: bool = True
    closed_at: int | None = None
    slots: Mapping[str, int] = field(default_factory=dict)
    email_last: int | None = None  # when the last e-mail of this opening (first or reminder) was sent
    reminders: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.scope)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


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


class Announcer(Protocol):
    def post_announcement(self, *, text: str, at_ms: int) -> None:
        """Post one Nightscout Announcement treatment. Raises a NightscoutError on failure."""
        ...


@dataclass
class Observation:
    """What one run found: incidents it saw, and the incidents it proved solved."""

    seen: list[Incident] = field(default_factory=list)
    solved: set[tuple[str, str]] = field(default_factory=set)
    solved_scopes: set[str] = field(default_factory=set)  # every account kind of these scopes is solved
    # scope -> initials of the people this run saw (several people only): remembered, so an incident of
    # someone LibreLink Up no longer shows can still say whom it concerns
    people: dict[str, str] = field(default_factory=dict)


# --- the catalogue -------------------------------------------------------------------------------------

_STEP_TITLES = {
    "tou": ("LibreLink Up wants new terms accepted", "accept the new Terms of Use"),
    "pp": ("LibreLink Up wants a new privacy policy accepted", "accept the new Privacy Policy"),
    "verifyEmail": (
        "LibreLink Up wants the e-mail address verified",
        "verify the e-mail address (follow the link in the e-mail from Abbott)",
    ),
}


def incident_for(exc: BaseException, *, scope: str = "", person: str = "", secret_hint: str = "") -> Incident | None:
    """The incident a run's failure means, or None when it passes by itself (outages, rate limits)."""
    if isinstance(exc, LinkUpBadCredentials):
        return Incident(
            "bad_credentials",
            "",
            "LibreLink Up rejected the password",
            "LibreLink Up rejected the e-mail address or password of the follower account. To protect the "
            "account from a lockout, the bridge tries no further login until the secret changes.",
            "Put the login of the LibreLink Up (follower) app into LINK_UP_USERNAME and LINK_UP_PASSWORD of "
            "the secret" + (f": {secret_hint}" if secret_hint else "") + ". The next run uses it.",
        )
    if isinstance(exc, LinkUpActionRequired):
        title, step = _STEP_TITLES.get(exc.step, ("LibreLink Up wants the account holder to act", "do what it asks"))
        return Incident(
            "action_required",
            "",
            title,
            "LibreLink Up sends no readings until the follower account's holder acts. The password is fine.",
            f"Open the LibreLink Up app, sign in as the follower and {step}. The bridge resumes by itself.",
        )
    if isinstance(exc, LinkUpVersionRejected):
        retired = bool(exc.minimum_version and exc.minimum_version.startswith("5."))
        return Incident(
            "version",  # one kind: the breaker behind both is the same (a refused version)
            "",
            "LibreLink Up retired the API this bridge uses" if retired else "LibreLink Up refused the app version",
            exc.message,
            "Watch the linkup-sync project for an update that supports LibreLink Up 5, then deploy it."
            if retired
            else f"Set the LinkUpVersion parameter to {exc.minimum_version or 'a newer version'} or to auto "
            f"(sam deploy --parameter-overrides LinkUpVersion={exc.minimum_version or 'auto'}).",
        )
    if isinstance(exc, LinkUpPatientNotFound | LinkUpNoConnections):
        return Incident(
            "patient_gone",
            scope,
            "LibreLink Up no longer shares the followed person's readings",
            "The LibreLink Up follower account does not follow this person (any more): the invitation was "
            "withdrawn or never accepted, or LINK_UP_CONNECTION names someone else.",
            "The sensor wearer invites the follower again in the LibreLink app (Connected Apps > LibreLinkUp) "
            "and the invitation is accepted in the LibreLink Up app; or correct LINK_UP_CONNECTION.",
            person=person,
        )
    if isinstance(exc, ConfigError):  # SecretError included: the secret is empty, incomplete or unusable
        return Incident(
            "secret",
            "",
            "The credentials secret is empty or incomplete",
            exc.message,
            "Set the secret's value as JSON with LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL and "
            "NIGHTSCOUT_API_TOKEN" + (f": {secret_hint}" if secret_hint else "") + ". The next run uses it.",
        )
    if isinstance(exc, NightscoutUnauthorized) or (isinstance(exc, NightscoutRejected) and "HTTP 403" in exc.message):
        return Incident(
            "nightscout_token",
            scope,
            "Nightscout refuses the bridge's token",
            exc.message if isinstance(exc, LinkupSyncError) else str(exc),
            "Put a working NIGHTSCOUT_API_TOKEN into the secret (the site's API_SECRET, or an access token whose "
            "role has api:entries:create and api:entries:read)"
            + (f": {secret_hint}" if secret_hint else "")
            + ". The next run uses it.",
            person=person,
            announce=False,  # Nightscout refuses us: it cannot show an announcement either
        )
    return None


def stale_incident(minutes: int, *, scope: str, person: str = "") -> Incident:
    """LibreLink Up itself has nothing new (sensor or phone side) while the bridge works: Nightscout only."""
    return Incident(
        "stale",
        scope,
        f"LibreLink Up has had no new reading for {minutes} minutes",
        "The bridge reaches LibreLink Up, but LibreLink Up has no newer reading.",
        "Check the sensor and the phone of the sensor wearer: is the LibreLink app showing readings, is the "
        "phone online and is the app allowed to run in the background?",
        person=person,
        email=False,  # the stale-data alarm (CloudWatch) e-mails; this one is for Nightscout's screen
    )


def is_nightscout_refusal(exc: BaseException) -> bool:
    return isinstance(exc, NightscoutUnauthorized | NightscoutRejected)


# --- the texts -------------------------------------------------------------------------------------------


def _when(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 120:
        return f"{minutes} minutes"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _subject(prefix: str, title: str) -> str:
    text = f"linkup-sync: {prefix}{title}"
    text = text.encode("ascii", "replace").decode("ascii").replace("\n", " ")
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."


def _titled(record: IncidentRecord) -> str:
    return f"{record.title} ({record.person})" if record.person else record.title


def email_open(record: IncidentRecord, now: int) -> tuple[str, str]:
    return _subject("", _titled(record)), _body(record, now, headline="")


def email_reminder(record: IncidentRecord, now: int) -> tuple[str, str]:
    headline = f"REMINDER: this is still not solved after {_ago(now - record.opened_at)}.\n\n"
    return _subject("still open: ", _titled(record)), _body(record, now, headline=headline)


def email_clear(record: IncidentRecord, now: int) -> tuple[str, str]:
    lines = [
        f"Solved: {record.title}.",
        "",
        f"Readings flow again since {_when(now)}. The problem began {_when(record.opened_at)} "
        f"({_ago(now - record.opened_at)} before). Nothing more to do.",
    ]
    if record.person:
        lines += ["", f"Person: {record.person}"]
    return _subject("solved: ", _titled(record)), "\n".join(lines) + "\n"


def _body(record: IncidentRecord, now: int, *, headline: str) -> str:
    lines = [
        f"What happened: {record.what}",
        "",
        f"Since: {_when(record.opened_at)} ({_ago(now - record.opened_at)} ago)",
    ]
    if record.person:
        lines.append(f"Person: {record.person}")
    lines += ["", f"What to do: {record.todo}", "", "You get one more e-mail when it is solved."]
    return headline + "\n".join(lines) + "\n"


def announcement_open(record: IncidentRecord) -> str:
    return f"linkup-sync: {_titled(record)}. {record.todo}"


def announcement_clear(record: IncidentRecord) -> str:
    return f"linkup-sync: solved: {_titled(record)}. Readings flow again."


# --- what a run saw -----------------------------------------------------------------------------------


def wants_fresh_secret(report: object, exc: BaseException | None) -> bool:
    """A login failure or a Nightscout 401/403: the secret may be what is wrong, so read it again at once."""
    failures = [exc] + [getattr(t, "failure", None) for t in getattr(report, "targets", [])]
    if getattr(report, "skipped", None) == "bad_credentials":
        return True
    return any(
        isinstance(f, LinkUpBadCredentials | NightscoutUnauthorized | ConfigError)
        or (isinstance(f, NightscoutRejected) and "HTTP 403" in f.message)
        for f in failures
    )


def observe(  # noqa: C901
    report: object,
    exc: BaseException | None,
    *,
    multi: bool,
    stale_after_minutes: int,
    secret_hint: str = "",
    account: object = None,
    version: str = "",
) -> Observation:
    """The incidents one run saw and the ones it proved solved, from its report and its failure."""
    seen: list[Incident] = []
    solved: set[tuple[str, str]] = set()
    scopes: set[str] = set()
    people: dict[str, str] = {}
    targets = list(getattr(report, "targets", []))
    per_target = {id(t.failure) for t in targets if getattr(t, "failure", None) is not None}
    if exc is not None and id(exc) not in per_target:
        incident = incident_for(exc, secret_hint=secret_hint)
        if incident is not None:
            seen.append(incident)
    skipped = getattr(report, "skipped", None)
    if skipped and getattr(report, "needs_person", False):
        # A stored breaker held the run back: the incident that set it is still open (or is opened now,
        # if the run that tripped the breaker could not record it).
        again: BaseException | None = None
        if skipped == "bad_credentials":
            again = LinkUpBadCredentials()
        elif skipped == "version":
            again = LinkUpVersionRejected(None, version)
        elif skipped == "action_required":
            reason = str(getattr(account, "login_block_reason", "") or "")
            again = LinkUpActionRequired(reason.split(":", 1)[1] if ":" in reason else "")
        incident = incident_for(again, secret_hint=secret_hint) if again is not None else None
        if incident is not None:
            seen.append(incident)
    for t in targets:
        # A stack that serves one person has one scope: "", whatever the failure's path (a patient that
        # is gone first fails its graph request, later the empty connection list) is one incident.
        person, scope = (t.initials, t.patient) if multi else ("", "")
        if t.failure is not None:
            incident = incident_for(t.failure, scope=scope, person=person, secret_hint=secret_hint)
            if incident is not None:
                seen.append(incident)
        if not t.graph_ok:
            continue
        if multi and t.initials:
            people[scope] = t.initials
        scopes.update({"", scope})  # LibreLink Up answered: its account-side incidents are over
        if t.failure is None:
            solved.add(("nightscout_token", scope))
        if t.newest_reading_age_s is not None:
            if t.newest_reading_age_s >= stale_after_minutes * 60:
                seen.append(stale_incident(stale_after_minutes, scope=scope, person=person))
            else:
                solved.add(("stale", scope))
    return Observation(seen=seen, solved=solved, solved_scopes=scopes, people=people)


# --- the bookkeeping --------------------------------------------------------------------------------------

Site = tuple[str, Announcer]  # (a short digest of the Nightscout URL, its announcer)


class IncidentDesk:
    """Turns one run's observation into the messages nobody has sent yet."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        clock: Callable[[], float],
        publisher: AlertPublisher | None,
        announcers: Mapping[str, Sequence[Site]] | None = None,
        announce: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self.announcers = dict(announcers or {})
        self.announce = announce
        self.sent: list[tuple[str, str, str]] = []  # (what, kind, scope) of every message this run sent

    def process(self, observation: Observation) -> bool:
        """Open, tell, remind, close. Returns whether an incident is still open afterwards."""
        now = int(self.clock())
        records = self.store.load_incidents()
        known = self.store.people
        if any(known.get(scope) != initials for scope, initials in observation.people.items()):
            known = {**known, **observation.people}
            self.store.remember_people(known)
        seen_keys = {inc.key for inc in observation.seen}
        for incident in observation.seen:
            if incident.scope and not incident.person and known.get(incident.scope):
                incident = replace(incident, person=known[incident.scope])
            record = records.get(incident.key)
            if record is None or not record.is_open:
                opened = self.store.open_incident(incident, now)
                if opened is None:  # another run opened it at the same moment: it sends
                    continue
                log.warning("incident opened: %s", incident.title, extra={"incident": incident.kind})
                records[incident.key] = opened
        still_open = False
        for key, record in list(records.items()):
            solved = key in observation.solved or (key[0] in ACCOUNT_KINDS and key[1] in observation.solved_scopes)
            if record.is_open and solved and key not in seen_keys:
                if not self.store.close(record, now):
                    continue
                log.info("incident solved: %s", record.title, extra={"incident": record.kind})
                record = replace(record, closed_at=now)
            if record.is_open:
                still_open = True
                self._tell_open(record, now)
            else:
                self._tell_clear(record, now)
        return still_open

    # --- sending -----------------------------------------------------------------------------------------

    def _sites(self, record: IncidentRecord) -> Sequence[Site]:
        if not (self.announce and record.announce):
            return ()
        return self.announcers.get(record.scope, ())

    def _tell_open(self, record: IncidentRecord, now: int) -> None:
        if record.email and self.publisher is not None:
            if EMAIL_OPEN not in record.slots:
                self._send_email(record, EMAIL_OPEN, now, *email_open(record, now))
            elif (
                record.email_last is not None
                and now - record.email_last >= REMINDER_AFTER_S
                and self.store.remind(record, now, now - REMINDER_AFTER_S)
            ):
                self._publish(record, "reminder", *email_reminder(record, now))
        for site, announcer in self._sites(record):
            if f"{ANN_OPEN}:{site}" not in record.slots and f"{ANN_REFUSED}:{site}" not in record.slots:
                self._post(record, site, announcer, ANN_OPEN, now, announcement_open(record))

    def _tell_clear(self, record: IncidentRecord, now: int) -> None:
        if self.publisher is not None and EMAIL_OPEN in record.slots and EMAIL_CLEAR not in record.slots:
            self._send_email(record, EMAIL_CLEAR, now, *email_clear(record, now))
        for site, announcer in self._sites(record):
            posted = f"{ANN_OPEN}:{site}" in record.slots and f"{ANN_REFUSED}:{site}" not in record.slots
            if posted and f"{ANN_CLEAR}:{site}" not in record.slots:
                self._post(record, site, announcer, ANN_CLEAR, now, announcement_clear(record))

    def _send_email(self, record: IncidentRecord, slot: str, now: int, subject: str, body: str) -> None:
        if not self.store.claim(record, slot, now):
            return
        if not self._publish(record, slot, subject, body):
            self.store.release(record, slot)

    def _publish(self, record: IncidentRecord, what: str, subject: str, body: str) -> bool:
        assert self.publisher is not None
        try:
            self.publisher.publish(subject, body)
        except Exception as exc:  # SNS unreachable or refusing: the next run tries again
            log.warning(
                "Could not send the alert e-mail (%s); the next run tries again",
                type(exc).__name__,
                extra={"incident": record.kind},
            )
            return False
        log.info("alert e-mail sent: %s", subject, extra={"incident": record.kind, "alert": what})
        self.sent.append((what, record.kind, record.scope))
        return True

    def _post(self, record: IncidentRecord, site: str, announcer: Announcer, what: str, now: int, text: str) -> None:
        slot = f"{what}:{site}"
        if not self.store.claim(record, slot, now):
            return
        try:
            announcer.post_announcement(text=text, at_ms=now * 1000)
        except NightscoutError as exc:
            if is_nightscout_refusal(exc):
                # The token may upload readings but not treatments: one warning per incident, no retries.
                self.store.claim(record, f"{ANN_REFUSED}:{site}", now)
                log.warning(
                    "Nightscout refused the announcement; give the token's role api:treatments:create and "
                    "api:treatments:read (v3 also api:treatments:update), or set NIGHTSCOUT_ANNOUNCE=false. "
                    "The readings are not affected: %s",
                    exc.message,
                    extra={"incident": record.kind},
                )
            else:
                self.store.release(record, slot)
                log.warning("Could not post the Nightscout announcement; the next run tries again: %s", exc.message)
            return
        log.info("Nightscout announcement posted: %s", text, extra={"incident": record.kind, "alert": what})
        self.sent.append((what, record.kind, record.scope))


class MemoryIncidentStore:
    """The IncidentStore in memory: for tests and local runs without DynamoDB. Same semantics."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], IncidentRecord] = {}
        self.people: dict[str, str] = {}

    def remember_people(self, people: dict[str, str]) -> None:
        self.people = dict(people)

    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        return dict(self.records)

    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        old = self.records.get(incident.key)
        if old is not None and old.is_open:
            return None
        record = IncidentRecord(
            kind=incident.kind,
            scope=incident.scope,
            gen=(old.gen if old else 0) + 1,
            opened_at=now,
            title=incident.title,
            what=incident.what,
            todo=incident.todo,
            person=incident.person,
            email=incident.email,
            announce=incident.announce,
        )
        self.records[incident.key] = record
        return record

    def _current(self, record: IncidentRecord) -> IncidentRecord | None:
        stored = self.records.get(record.key)
        return stored if stored is not None and stored.gen == record.gen else None

    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        stored = self._current(record)
        if stored is None or slot in stored.slots:
            return False
        updated = replace(stored, slots={**stored.slots, slot: now})
        self.records[record.key] = replace(updated, email_last=now) if slot == EMAIL_OPEN else updated
        return True

    def release(self, record: IncidentRecord, slot: str) -> None:
        stored = self._current(record)
        if stored is not None:
            self.records[record.key] = replace(stored, slots={k: v for k, v in stored.slots.items() if k != slot})

    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        stored = self._current(record)
        if stored is None or not stored.is_open or stored.email_last is None or stored.email_last > cutoff:
            return False
        self.records[record.key] = replace(stored, email_last=now, reminders=stored.reminders + 1)
        return True

    def close(self, record: IncidentRecord, now: int) -> bool:
        stored = self._current(record)
        if stored is None or not stored.is_open:
            return False
        self.records[record.key] = replace(stored, closed_at=now)
        return True
