"""One run of the bridge: load state -> breakers -> ticket -> patient -> graph -> upload -> save.

Pure logic behind the ports: it never touches HTTP, DynamoDB or Secrets Manager itself. This module
holds the run with its ticket and patient (SyncService); the circuit breakers decide in breakers.py and
the upload of one person's readings is upload.py. The order of the steps is the safety argument:
- the circuit breakers are checked before any request to LibreLink Up, and stored in the state, so a
  bad password, a lockout or a rate limit stops requests across cold starts and concurrent runs;
- the ticket is reused for its whole 180-day life (one login per lifetime, never a login loop);
- the upload state advances only after Nightscout accepted the readings, so a crash anywhere means the
  next run sends the same readings again (harmless: Nightscout upserts on the exact instant).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from .breakers import (
    ACTION_RETRY_S,
    adoptable_minimum,
    after_answer,
    after_failure,
    after_login,
    login_blocked,
    run_blocked,
)
from .errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpError,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkupSyncError,
    LinkUpUnauthorized,
    LinkUpVersionRejected,
    NightscoutError,
)
from .fingerprint import slow_fingerprint
from .librelinkup.versions import version_key
from .model import Connection, Credentials, Graph, Target, Ticket
from .ports import Clock, LinkUpSource, NightscoutSink, StateStore
from .report import RunReport, Skipped, TargetReport, short_hash
from .state.model import AccountState, StoredState, TargetState, account_key, target_id
from .trends import DEFAULT_TREND_MODE
from .upload import Uploader

log = logging.getLogger("linkup_sync")
_T = TypeVar("_T")

LOGIN_LOCK_S = 60  # longer than any login can take (the run's deadline is 20 s)


class SyncService:
    def __init__(
        self,
        *,
        source: LinkUpSource,
        sinks: Callable[[Target, TargetState], NightscoutSink],
        store: StateStore,
        clock: Clock,
        region: str,
        connection: str | None = None,
        version_auto: bool = False,
        sensor_start: bool = True,
        trend_arrows: str = DEFAULT_TREND_MODE,
        jitter: Callable[[], float] = random.random,
        fingerprint: Callable[[Credentials], str] = slow_fingerprint,
    ) -> None:
        self.source = source
        self.sinks = sinks
        self.store = store
        # Each target's readings go through it (upload.py): one for the run, it holds no per-target state.
        self.uploader = Uploader(store=store, clock=clock, trend_arrows=trend_arrows, sensor_start=sensor_start)
        self.clock = clock
        self.region = region
        self.connection = connection
        self.version_auto = version_auto
        self.jitter = jitter
        self.fingerprint = fingerprint
        self._tag = ""  # the fingerprint of this run's credentials
        self.report = RunReport()
        self.account = AccountState()  # the account as stored, kept current through the run
        self.state: StoredState | None = None  # as loaded at the start of the run (its incident marker too)
        self._adopted = False  # LINK_UP_VERSION=auto adopted a minimum in this run

    # --- circuit breakers (breakers.py decides, the account item remembers) ----------------------------

    def _save_account(self, key: str, **changes: Any) -> None:
        """Store `changes` on the account item. When another run wrote the item since this run read it,
        the store returns that run's version: apply the changes again on top of it (a lost ticket would
        mean a second login, a lost breaker a second login with a bad password)."""
        for _ in range(3):
            self.account = self.store.save_account(key, replace(self.account, **changes))
            if replace(self.account, **changes) == self.account:
                return

    def _trip(self, key: str, exc: LinkUpError, creds: Credentials) -> None:
        """Persist what this failure means for the next runs."""
        now = int(self.clock())
        changes = after_failure(
            exc,
            self.account,
            now=now,
            secret_version=creds.version,
            tag=self._tag,
            version_auto=self.version_auto,
            jitter=self.jitter,
        )
        if isinstance(exc, LinkUpActionRequired):
            exc.with_next_try(now + ACTION_RETRY_S)  # the message says when the next login is tried
        if isinstance(exc, LinkUpVersionRejected) and "version" in changes:
            log.warning(
                "LibreLink Up requires app version %s; the next run uses it (LINK_UP_VERSION=auto)", changes["version"]
            )
        if changes:
            self._save_account(key, **changes)

    # --- ticket --------------------------------------------------------------------------------

    def _login(self, key: str, creds: Credentials) -> Ticket:
        blocked = login_blocked(self.account, secret_version=creds.version, tag=self._tag, now=self.clock())
        if blocked is not None:
            raise blocked
        if not self.store.acquire_login_lock(key, self.clock(), LOGIN_LOCK_S):
            raise Skipped(
                "login_in_progress",
                "Another run is logging in to LibreLink Up right now; this run leaves it to that one.",
            )
        region = self.account.region or self.region
        self.report.logins += 1
        ticket = self.source.login(creds.username, creds.password, region)
        if ticket.region != region:
            log.info("LibreLink Up moved the account to region %s; remembered for later runs", ticket.region.upper())
        # A successful login answers the credential and lock breakers; saving also releases the login lock.
        self._save_account(key, **after_login(ticket, tag=self._tag))
        return ticket

    # --- patient -------------------------------------------------------------------------------

    def _choose_patient(self, key: str, ticket: Ticket, target: Target) -> tuple[str, str]:
        """The patient id of this target and where it came from (for a message that names both)."""
        if target.patient_id:
            return target.patient_id, "secret" if target.entry is None else f"TARGETS entry {target.entry}"
        if self.connection:
            return self.connection, "setting"
        if self.account.patient_id:
            return self.account.patient_id, "remembered"
        return self._discover_patient(key, ticket), "discovered"

    def _connections(self, key: str, ticket: Ticket) -> list[Connection]:
        return self._adopting(key, lambda: self.source.connections(ticket))

    def _discover_patient(self, key: str, ticket: Ticket) -> str:
        connections = self._connections(key, ticket)
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
        """One login (if needed) serves every target; each target gets one graph request and its own
        upload state, and a failing target never blocks or rolls back the others."""
        state = self.state = self.store.load(account_key(creds.username))
        self.account = state.account
        self._adopted = False
        stored_key, built_in_key = version_key(self.account.version), version_key(self.source.version)
        if self.version_auto and self.account.version and stored_key and built_in_key and stored_key > built_in_key:
            # LINK_UP_VERSION=auto: an adopted minimum, unless the built-in version is newer already.
            self.source.version = self.account.version
        failures: list[LinkupSyncError] = []
        targets = []
        for target in creds.targets:
            try:  # a site's settings are checked before LibreLink Up is asked for anything
                self.sinks(target, TargetState(target_id=""))
                targets.append(target)
            except ConfigError as exc:
                failures.append(exc)
                log.error("%s", exc.message, extra={"reason": exc.reason})
        if not targets:
            raise failures[0]
        self._forget_other_credentials(state.key, creds)
        try:
            blocked = run_blocked(self.account, self.source.version, self.clock())
            if blocked is not None:
                raise blocked
            ticket = self._ticket(creds, state.key)
            for target in targets:
                try:
                    ticket = self._sync_target(creds, state, ticket, target)
                except (NightscoutError, LinkUpPatientNotFound, ConfigError) as exc:
                    # this target's own problem: report it after the others had their turn
                    failures.append(exc)
                    log.error("%s", exc.message, extra={"reason": exc.reason})
        except Skipped as skip:
            self.report.skipped = skip.reason
            self.report.skipped_message = skip.message
            self.report.needs_person = skip.needs_person
            log.warning("run skipped: %s", skip.message, extra={"reason": skip.reason})
            return self.report
        except LinkUpError as exc:
            self._trip(state.key, exc, creds)
            raise
        answered = after_answer(self.account)  # LibreLink Up answered again: the back-off is over
        if answered:
            self._save_account(state.key, **answered)
        if failures:
            raise failures[0]
        return self.report

    def _forget_other_credentials(self, key: str, creds: Credentials) -> None:
        """Drop a ticket and a remembered person obtained with other credentials (a changed username or
        password, or a ticket stored before fingerprints existed): this run logs in with the ones given,
        so a wrong new password meets the bad-password breaker instead of riding on an old login."""
        self._tag = self.fingerprint(creds)
        warned = False
        for _ in range(3):
            account = self.account
            if account.creds_tag == self._tag or (account.ticket is None and account.patient_id is None):
                return  # also when a concurrent run logged in with these credentials first
            if not warned and account.creds_tag is None:
                log.info(  # every account once, on the first run of a version that ties tickets to credentials
                    "The stored LibreLink Up login is not tied to the credentials it was made with (it was "
                    "stored by an earlier version): this run logs in once to tie a new one to them",
                    extra={"reason": "credentials_unchecked"},
                )
            elif not warned:
                log.warning(
                    "The stored LibreLink Up login was made with other credentials than the ones given now "
                    "(the username or password changed): it is not used, and this run logs in with the new ones",
                    extra={"reason": "credentials_changed"},
                )
            warned = True
            # When another run wrote first, the store returns its version: looked at again above.
            self.account = self.store.save_account(key, replace(account, ticket=None, patient_id=None, creds_tag=None))
        if self.account.creds_tag != self._tag:  # other runs kept writing: never use their login in this run
            self.account = replace(self.account, ticket=None, patient_id=None)

    def _ticket(self, creds: Credentials, key: str) -> Ticket:
        ticket = self.account.ticket
        if ticket is None or not ticket.usable_at(self.clock()):
            ticket = self._login(key, creds)
        return ticket

    def _sync_target(self, creds: Credentials, state: StoredState, ticket: Ticket, target: Target) -> Ticket:
        report = TargetReport(target=target)
        self.report.targets.append(report)
        patient_id, origin = self._choose_patient(state.key, ticket, target)
        report.patient = short_hash(patient_id)
        if not target.patient_id and not self.connection and self.account.patient_id != patient_id:
            self._save_account(state.key, patient_id=patient_id)
        try:
            try:
                graph = self._graph(state.key, ticket, patient_id)
            except LinkUpUnauthorized:
                # The stored ticket was revoked: forget it, log in once, retry once. A second 401 ends
                # the run (raised to the caller), so a revoked account can never cause a login loop.
                log.warning("LibreLink Up refused the stored ticket; logging in again once")
                self.account = replace(self.account, ticket=None)
                ticket = self._login(state.key, creds)
                graph = self._graph(state.key, ticket, patient_id)
        except LinkUpPatientNotFound:
            report.error = "patient_not_found"
            try:
                known = [c.patient_id for c in self._connections(state.key, ticket)]
            except LinkUpPatientNotFound:  # the list itself answered couldNotLoadPatient: name our id anyway
                known = []
            if not target.patient_id and not self.connection and self.account.patient_id == patient_id:
                # The remembered patient is gone (invitation withdrawn): forget it so the next run chooses again.
                self._save_account(state.key, patient_id=None)
            gone = LinkUpPatientNotFound(patient_id, known, origin=origin)
            report.failure = gone
            raise gone from None
        report.graph_ok = True
        report.initials = graph.initials
        self._upload(state, target, graph, report)
        return ticket

    def _graph(self, key: str, ticket: Ticket, patient_id: str) -> Graph:
        return self._adopting(key, lambda: self.source.graph(ticket, patient_id))

    def _adopting(self, key: str, call: Callable[[], _T]) -> _T:
        """Run one data request; with LINK_UP_VERSION=auto, a 920 naming a higher 4.x minimum is adopted,
        remembered and the request retried once, in this run and with the same ticket (no login).

        A 920 that names no minimum or one already met never gets here (LinkUpVersionContradicted, the
        back-off); a 5.x minimum (the API is retired) and a pinned version are raised: the caller stores
        the hourly retry.
        """
        try:
            return call()
        except LinkUpVersionRejected as exc:
            minimum = adoptable_minimum(exc, version_auto=self.version_auto)
            if minimum is None or self._adopted:
                raise
            self._adopted = True  # at most once per run: a server that keeps raising its minimum is stopped
            log.warning(
                "LibreLink Up now requires app version %s (it refused %s); the bridge uses %s from now on "
                "(LINK_UP_VERSION=auto)",
                minimum,
                exc.sent_version,
                minimum,
                extra={"reason": "version_adopted"},
            )
            self.source.version = minimum
            self._save_account(key, version=minimum)
            return call()

    def _upload(self, state: StoredState, target: Target, graph: Graph, report: TargetReport) -> None:
        stored = state.target(target_id(graph.patient_id, target.nightscout_url))
        prepared = self.uploader.prepare(graph, stored, report)
        sink = self.sinks(target, prepared.stored)
        try:
            self.uploader.send(state.key, prepared, sink, report)
        except NightscoutError as exc:
            report.error = exc.reason
            report.failure = exc
            raise
        finally:
            self.report.nightscout_requests += sink.requests_made
