"""One run of the bridge: load state -> breakers -> ticket -> patient -> graph -> select -> upload -> save.

Pure logic behind the ports: it never touches HTTP, DynamoDB or Secrets Manager itself. The order of
the steps is the safety argument:
- the circuit breakers are checked before any request to LibreLink Up, and stored in the state, so a
  bad password, a lockout or a rate limit stops requests across cold starts and concurrent runs;
- the ticket is reused for its whole 180-day life (one login per lifetime, never a login loop);
- the upload state advances only after Nightscout accepted the readings, so a crash anywhere means the
  next run sends the same readings again (harmless: Nightscout upserts on the exact instant).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpError,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpUnauthorized,
    LinkUpVersionRejected,
)
from .ports import Clock, Credentials, Graph, LinkUpSource, NightscoutSink, Ticket
from .selection import select_new
from .state.model import AccountState, StateStore, StoredState, account_key

log = logging.getLogger("linkup_sync")

LOCKOUT_MARGIN_S = 60  # wait a little longer than LibreLink Up's own lockout
ACTION_RETRY_S = 3600  # after "the person must act": try logging in again at most hourly
BACKOFF_BASE_S = 120
BACKOFF_CAP_S = 30 * 60
LOGIN_LOCK_S = 60  # longer than any login can take (the run's deadline is 20 s)

# Failures of LibreLink Up's edge or servers: the next runs skip LibreLink Up for a growing while.
BACKOFF_ERRORS = (LinkUpRateLimited, LinkUpBlocked, LinkUpMaintenance, LinkUpServerError, LinkUpTimeout)


def short_hash(value: str) -> str:
    """A stable, non-reversible label for a patient in logs and metrics (never the name or the id)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class Skipped(Exception):
    """The run did not contact LibreLink Up because a stored circuit breaker says so."""

    def __init__(self, reason: str, message: str, *, needs_person: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.needs_person = needs_person


@dataclass
class RunReport:
    """What one run did; becomes the handler's return value and the summary log line."""

    patient: str = ""
    readings_seen: int = 0
    uploaded: int = 0
    gap_filled: int = 0
    skipped_items: int = 0
    newest_reading_age_s: float | None = None
    logins: int = 0
    linkup_requests: int = 0
    nightscout_requests: int = 0
    skipped: str | None = None  # the breaker's reason when the run did not contact LibreLink Up
    skipped_message: str | None = None
    needs_person: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        result = {
            "patient": self.patient,
            "readings_seen": self.readings_seen,
            "uploaded": self.uploaded,
            "gap_filled": self.gap_filled,
            "skipped_items": self.skipped_items,
            "newest_reading_age_s": self.newest_reading_age_s,
            "logins": self.logins,
            "linkup_requests": self.linkup_requests,
            "nightscout_requests": self.nightscout_requests,
        }
        if self.skipped:
            result["skipped"] = self.skipped
            result["skipped_message"] = self.skipped_message
        return result


class SyncService:
    def __init__(
        self,
        *,
        source: LinkUpSource,
        sink: NightscoutSink,
        store: StateStore,
        clock: Clock,
        region: str,
        connection: str | None = None,
        version_auto: bool = False,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.source = source
        self.sink = sink
        self.store = store
        self.clock = clock
        self.region = region
        self.connection = connection
        self.version_auto = version_auto
        self.jitter = jitter
        self.report = RunReport()
        self.account = AccountState()  # the account as stored, kept current through the run

    # --- circuit breakers ----------------------------------------------------------------------

    def _check_breakers(self, account: AccountState) -> None:
        now = self.clock()
        if account.backoff_until and now < account.backoff_until:
            wait = int(account.backoff_until - now)
            raise Skipped(
                account.backoff_reason or "backoff",
                f"LibreLink Up asked us to slow down ({account.backoff_reason}); this run skips it, "
                f"the next try is in {wait} s.",
            )
        if account.rejected_version and account.rejected_version == self.source.version:
            raise Skipped(
                "version",
                f"LibreLink Up refused app version {account.rejected_version}; no request is made until "
                "LINK_UP_VERSION is changed (or set to 'auto').",
                needs_person=True,
            )

    def _check_login_allowed(self, creds: Credentials, account: AccountState) -> None:
        now = self.clock()
        if account.bad_credentials_version is not None and account.bad_credentials_version == creds.version:
            raise Skipped(
                "bad_credentials",
                LinkUpBadCredentials().message,
                needs_person=True,
            )
        if account.login_not_before and now < account.login_not_before:
            reason = account.login_block_reason or "locked"
            wait = int(account.login_not_before - now)
            if reason == "locked":
                message = f"The LibreLink Up account is locked; no login is tried for another {wait} s."
            else:
                message = (f"LibreLink Up is waiting for the person to act ({reason}); the next login is tried "
                           f"in {wait} s. Open the LibreLink Up app and follow its request.")
            raise Skipped(reason if reason == "locked" else "action_required", message,
                          needs_person=reason != "locked")

    def _trip(self, key: str, exc: LinkUpError, creds: Credentials) -> None:
        """Persist what this failure means for the next runs."""
        account, now = self.account, int(self.clock())
        if isinstance(exc, LinkUpBadCredentials):
            account = replace(account, ticket=None, bad_credentials_version=creds.version or "unknown")
        elif isinstance(exc, LinkUpLocked):
            account = replace(account, login_not_before=now + exc.lockout_seconds + LOCKOUT_MARGIN_S,
                              login_block_reason="locked")
        elif isinstance(exc, LinkUpActionRequired):
            account = replace(account, ticket=None, login_not_before=now + ACTION_RETRY_S,
                              login_block_reason=f"action_required:{exc.step}")
        elif isinstance(exc, LinkUpVersionRejected):
            account = replace(account, rejected_version=exc.sent_version)
        elif isinstance(exc, BACKOFF_ERRORS):
            failures = account.backoff_failures + 1
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                delay = float(retry_after)
            else:
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1) * (0.8 + 0.4 * self.jitter()))
            account = replace(account, backoff_until=int(now + delay), backoff_failures=failures,
                              backoff_reason=exc.reason)
        else:
            return
        self.account = self.store.save_account(key, account)

    # --- ticket --------------------------------------------------------------------------------

    def _login(self, key: str, creds: Credentials) -> Ticket:
        self._check_login_allowed(creds, self.account)
        if not self.store.acquire_login_lock(key, self.clock(), LOGIN_LOCK_S):
            raise Skipped("login_in_progress", "Another run is logging in to LibreLink Up right now; this run "
                                               "leaves it to that one.")
        region = self.account.region or self.region
        self.report.logins += 1
        ticket = self.source.login(creds.username, creds.password, region)
        if ticket.region != region:
            log.info("LibreLink Up moved the account to region %s; remembered for later runs", ticket.region.upper())
        # A successful login answers the credential and lock breakers; saving also releases the login lock.
        self.account = self.store.save_account(key, replace(
            self.account, ticket=ticket, region=ticket.region, bad_credentials_version=None,
            login_not_before=None, login_block_reason=None))
        return ticket

    # --- patient -------------------------------------------------------------------------------

    def _choose_patient(self, ticket: Ticket) -> str:
        if self.connection:
            return self.connection
        if self.account.patient_id:
            return self.account.patient_id
        return self._discover_patient(ticket)

    def _discover_patient(self, ticket: Ticket) -> str:
        connections = self.source.connections(ticket)
        if not connections:
            raise LinkUpNoConnections()
        if len(connections) > 1:
            log.warning(
                "This LibreLink Up account follows %d people; using the first. Set LINK_UP_CONNECTION to "
                "choose one of: %s",
                len(connections),
                ", ".join(c.patient_id for c in connections),
            )
        return connections[0].patient_id

    # --- the run -------------------------------------------------------------------------------

    def run(self, creds: Credentials) -> RunReport:
        state = self.store.load(account_key(creds.username))
        self.account = state.account
        if self.version_auto and self.account.version:
            self.source.version = self.account.version
        try:
            self._check_breakers(self.account)
            graph = self._fetch(creds, state.key)
        except Skipped as skip:
            self.report.skipped = skip.reason
            self.report.skipped_message = skip.message
            self.report.needs_person = skip.needs_person
            log.warning("run skipped: %s", skip.message, extra={"reason": skip.reason})
            return self.report
        except LinkUpError as exc:
            self._trip(state.key, exc, creds)
            raise
        if self.account.backoff_failures or self.account.backoff_until or self.account.rejected_version:
            # LibreLink Up answered again: the back-off is over.
            self.account = self.store.save_account(state.key, replace(
                self.account, backoff_until=None, backoff_failures=0, backoff_reason=None, rejected_version=None))
        self._upload(state, graph)
        return self.report

    def _fetch(self, creds: Credentials, key: str) -> Graph:
        ticket = self.account.ticket
        if ticket is None or not ticket.usable_at(self.clock()):
            ticket = self._login(key, creds)
        patient_id = self._choose_patient(ticket)
        if not self.connection and self.account.patient_id != patient_id:
            self.account = self.store.save_account(key, replace(self.account, patient_id=patient_id))
        try:
            try:
                return self._graph(key, ticket, patient_id)
            except LinkUpUnauthorized:
                # The stored ticket was revoked: forget it, log in once, retry once. A second 401 ends
                # the run (raised to the caller), so a revoked account can never cause a login loop.
                log.warning("LibreLink Up refused the stored ticket; logging in again once")
                self.account = replace(self.account, ticket=None)
                ticket = self._login(key, creds)
                return self._graph(key, ticket, patient_id)
        except LinkUpPatientNotFound:
            known = [c.patient_id for c in self.source.connections(ticket)]
            if not self.connection and self.account.patient_id == patient_id:
                # The remembered patient is gone (invitation withdrawn): forget it so the next run chooses again.
                self.account = self.store.save_account(key, replace(self.account, patient_id=None))
            raise LinkUpPatientNotFound(patient_id, known) from None

    def _graph(self, key: str, ticket: Ticket, patient_id: str) -> Graph:
        try:
            return self.source.graph(ticket, patient_id)
        except LinkUpVersionRejected as exc:
            minimum = exc.minimum_version
            if not (self.version_auto and minimum and minimum.startswith("4.") and minimum != self.source.version):
                raise
            # LINK_UP_VERSION=auto: adopt the minimum LibreLink Up names, once, and remember it.
            log.warning("LibreLink Up requires app version %s; adopting it (LINK_UP_VERSION=auto)", minimum)
            self.source.version = minimum
            self.account = self.store.save_account(key, replace(self.account, version=minimum))
            return self.source.graph(ticket, patient_id)

    def _upload(self, state: StoredState, graph: Graph) -> None:
        target = state.target(graph.patient_id)
        report = self.report
        report.patient = short_hash(graph.patient_id)
        report.readings_seen = len(graph.history) + (1 if graph.current else 0)
        report.skipped_items = graph.skipped_items
        newest = max(
            [r.epoch_ms for r in graph.history] + ([graph.current.epoch_ms] if graph.current else []), default=None
        )
        if newest is not None:
            report.newest_reading_age_s = round(self.clock() - newest / 1000, 1)

        new = select_new(graph, target.uploaded)
        if not new:
            return
        accepted = self.sink.upload(new)
        # Only now, after Nightscout accepted them, does the state move forward.
        self.store.record_upload(state.key, target, (r.epoch_s for r in new))
        report.uploaded = accepted
        report.gap_filled = sum(1 for r in new if r.source == "graph")
