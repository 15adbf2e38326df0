"""What one run saw, and the desk that turns it into the messages nobody has sent yet.

`observe` reads a run's report (and the account's stored breakers) into an Observation: the incidents
the run saw and the ones it proved solved. `IncidentDesk.process` opens, tells, reminds and closes them
through the IncidentStore, each message sent only by the run that claimed its slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpVersionRejected,
    NightscoutError,
)
from ..ports import AlertPublisher, Announcer, IncidentStore
from ..report import RunReport, TargetReport
from ..state.model import AccountState
from .model import (
    ACCOUNT_KINDS,
    ANN_CLEAR,
    ANN_OPEN,
    ANN_REFUSED,
    EMAIL_CLEAR,
    EMAIL_OPEN,
    REMINDER_AFTER_S,
    Incident,
    IncidentRecord,
    incident_for,
    is_nightscout_refusal,
    stale_incident,
    token_refused,
)
from .texts import announcement_clear, announcement_open, email_clear, email_open, email_reminder

log = logging.getLogger("linkup_sync")


@dataclass
class Observation:
    """What one run found: incidents it saw, and the incidents it proved solved."""

    seen: list[Incident] = field(default_factory=list)
    solved: set[tuple[str, str]] = field(default_factory=set)
    solved_scopes: set[str] = field(default_factory=set)  # every account kind of these scopes is solved
    # scope -> initials of the people this run saw (several people only): remembered, so an incident of
    # someone LibreLink Up no longer shows can still say whom it concerns
    people: dict[str, str] = field(default_factory=dict)


# --- what a run saw -----------------------------------------------------------------------------------


def new_people(known: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    """Whether a run saw someone (scope -> initials) whose initials are not the ones stored for that scope."""
    return any(known.get(scope) != initials for scope, initials in seen.items())


def wants_fresh_secret(report: RunReport, exc: BaseException | None) -> bool:
    """A login failure or a Nightscout 401/403: the secret may be what is wrong, so read it again at once."""
    if report.skipped == "bad_credentials":
        return True
    failures = [exc] + [t.failure for t in report.targets]
    return any(isinstance(f, LinkUpBadCredentials | ConfigError) or token_refused(f) for f in failures)


def observe(
    report: RunReport,
    exc: BaseException | None,
    *,
    multi: bool,
    stale_after_minutes: int,
    secret_hint: str = "",
    account: AccountState | None = None,
    version: str = "",
) -> Observation:
    """The incidents one run saw and the ones it proved solved, from its report and its failure."""
    observation = Observation()
    observation.seen += _run_failure(report, exc, secret_hint)
    observation.seen += _held_back(report, account, version, secret_hint)
    for target in report.targets:
        _observe_target(
            observation, target, multi=multi, stale_after_minutes=stale_after_minutes, secret_hint=secret_hint
        )
    return observation


def _found(exc: BaseException | None, *, secret_hint: str, scope: str = "", person: str = "") -> list[Incident]:
    incident = incident_for(exc, scope=scope, person=person, secret_hint=secret_hint) if exc is not None else None
    return [incident] if incident is not None else []


def _run_failure(report: RunReport, exc: BaseException | None, secret_hint: str) -> list[Incident]:
    """The run's own failure, unless it is one target's (that one is seen with its target's scope)."""
    per_target = {id(t.failure) for t in report.targets if t.failure is not None}
    if exc is None or id(exc) in per_target:
        return []
    return _found(exc, secret_hint=secret_hint)


def _held_back(report: RunReport, account: AccountState | None, version: str, secret_hint: str) -> list[Incident]:
    """A stored breaker held the run back: the incident that set it is still open (or is opened now, if
    the run that tripped the breaker could not record it)."""
    if not (report.skipped and report.needs_person):
        return []
    return _found(_breaker_failure(report.skipped, account, version), secret_hint=secret_hint)


def _breaker_failure(skipped: str, account: AccountState | None, version: str) -> BaseException | None:
    """The failure that set the breaker a run was held back by (None: a breaker no person answers)."""
    if skipped == "bad_credentials":
        return LinkUpBadCredentials()
    if skipped == "version":
        return LinkUpVersionRejected(None, version)
    if skipped == "action_required":
        reason = (account.login_block_reason if account is not None else None) or ""
        return LinkUpActionRequired(reason.split(":", 1)[1] if ":" in reason else "")
    return None


def _observe_target(
    observation: Observation, target: TargetReport, *, multi: bool, stale_after_minutes: int, secret_hint: str
) -> None:
    # A stack that serves one person has one scope: "", whatever the failure's path (a patient that is
    # gone first fails its graph request, later the empty connection list) is one incident.
    person, scope = (target.initials, target.patient) if multi else ("", "")
    observation.seen += _found(target.failure, scope=scope, person=person, secret_hint=secret_hint)
    if not target.graph_ok:
        return
    if multi and target.initials:
        observation.people[scope] = target.initials
    observation.solved_scopes.update({"", scope})  # LibreLink Up answered: its account-side incidents are over
    if target.failure is None:
        observation.solved.add(("nightscout_token", scope))
    if target.newest_reading_age_s is None:
        return
    if target.newest_reading_age_s >= stale_after_minutes * 60:
        observation.seen.append(stale_incident(stale_after_minutes, scope=scope, person=person))
    else:
        observation.solved.add(("stale", scope))


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

    def process(self, observation: Observation) -> None:
        """Open, tell, remind, close (which ones it leaves open: incidents/known.py, OpenTally)."""
        now = int(self.clock())
        records = self.store.load_incidents()
        known = self.store.people
        if new_people(known, observation.people):
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
        for key, record in list(records.items()):
            solved = key in observation.solved or (key[0] in ACCOUNT_KINDS and key[1] in observation.solved_scopes)
            if record.is_open and solved and key not in seen_keys:
                if not self.store.close(record, now):
                    continue
                log.info("incident solved: %s", record.title, extra={"incident": record.kind})
                record = replace(record, closed_at=now)
            if record.is_open:
                self._tell_open(record, now)
            else:
                self._tell_clear(record, now)

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
