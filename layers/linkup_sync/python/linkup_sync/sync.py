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
from dataclasses import replace
from typing import Any, TypeVar

from .errors import (
    ConfigError,
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
    LinkupSyncError,
    LinkUpTimeout,
    LinkUpUnauthorized,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
    NightscoutError,
    NightscoutPartialUpload,
    NightscoutRejected,
    NightscoutUnauthorized,
)
from .fingerprint import slow_fingerprint
from .librelinkup.versions import version_key
from .plausibility import heal, latest_plausible_s, screen
from .ports import Clock, Connection, Credentials, Graph, LinkUpSource, NightscoutSink, Target, Ticket
from .readings import Reading
from .report import RunReport, Skipped, TargetReport
from .selection import GAP_S, select_new
from .state.model import AccountState, StateStore, StoredState, TargetState, account_key, target_id
from .trends import DEFAULT_TREND_MODE, with_directions

log = logging.getLogger("linkup_sync")
_T = TypeVar("_T")

LOCKOUT_MARGIN_S = 60  # wait a little longer than LibreLink Up's own lockout
ACTION_RETRY_S = 3600  # after "the person must act": try logging in again at most hourly
VERSION_RETRY_S = 3600  # a refused pinned version (or a 5.x minimum): ask LibreLink Up again at most hourly
BACKOFF_BASE_S = 120
BACKOFF_CAP_S = 30 * 60
RETRY_AFTER_CAP_S = 24 * 3600  # a Retry-After is honoured, but never for more than a day
LOGIN_LOCK_S = 60  # longer than any login can take (the run's deadline is 20 s)
# Nightscout snoozes urgent alarms while its newest treatment is younger than 10 minutes and not an
# announcement (docs/nightscout-api.md §11): a Sensor Start is posted only once its time is at least
# this far in the past.
SENSOR_START_MIN_AGE_S = 600

# Failures of LibreLink Up's edge or servers: the next runs skip LibreLink Up for a growing while.
BACKOFF_ERRORS = (
    LinkUpRateLimited,
    LinkUpBlocked,
    LinkUpMaintenance,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpVersionContradicted,  # a 920 naming no minimum, or one already met: a fault, not a refusal
)


def short_hash(value: str) -> str:
    """A stable, non-reversible label for a patient in logs and metrics (never the name or the id)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


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
        self.trend_arrows = trend_arrows
        self.sinks = sinks
        self.sensor_start = sensor_start
        self.store = store
        self.clock = clock
        self.region = region
        self.connection = connection
        self.version_auto = version_auto
        self.jitter = jitter
        self.fingerprint = fingerprint
        self._tag = ""  # the fingerprint of this run's credentials
        self.report = RunReport()
        self.account = AccountState()  # the account as stored, kept current through the run
        self._adopted = False  # LINK_UP_VERSION=auto adopted a minimum in this run
        self._deferred: tuple[str, int] | None = None  # the read-back failed: (why, gap readings left)

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
        retry_at = account.version_retry_at
        if account.rejected_version == self.source.version and retry_at and now < retry_at:
            # Bounded: a changed LINK_UP_VERSION (or an adopted one) ends it at once, else it is asked again hourly.
            raise Skipped(
                "version",
                f"LibreLink Up refused app version {account.rejected_version}; it is asked again in "
                f"{int(retry_at - now)} s, or at once when LINK_UP_VERSION is changed (or set to 'auto').",
                needs_person=True,
            )

    def _check_login_allowed(self, creds: Credentials, account: AccountState) -> None:
        now = self.clock()
        if (
            account.bad_credentials_version is not None
            and account.bad_credentials_version == creds.version
            # a block recorded before fingerprints existed holds for its whole secret version
            and account.bad_credentials_tag in (None, self._tag)
        ):
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
                message = (
                    f"LibreLink Up is waiting for the person to act ({reason}); the next login is tried "
                    f"in {wait} s. Open the LibreLink Up app and follow its request."
                )
            raise Skipped(reason if reason == "locked" else "action_required", message, needs_person=reason != "locked")

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
        account, now = self.account, int(self.clock())
        changes: dict[str, Any]
        if isinstance(exc, LinkUpBadCredentials):
            changes = {
                "ticket": None,
                "bad_credentials_version": creds.version or "unknown",
                "bad_credentials_tag": self._tag,
            }
        elif isinstance(exc, LinkUpLocked):
            changes = {"login_not_before": now + exc.lockout_seconds + LOCKOUT_MARGIN_S, "login_block_reason": "locked"}
        elif isinstance(exc, LinkUpActionRequired):
            changes = {
                "ticket": None,
                "login_not_before": now + ACTION_RETRY_S,
                "login_block_reason": f"action_required:{exc.step}",
            }
            exc.with_next_try(now + ACTION_RETRY_S)  # the message says when the next login is tried
        elif isinstance(exc, LinkUpVersionRejected):
            minimum = exc.minimum_version
            if self.version_auto and minimum and minimum.startswith("4."):
                # auto, but not adopted in this run (a refused login, or a second raise in one run):
                # the next run starts with it, so this needs no person either.
                log.warning(
                    "LibreLink Up requires app version %s; the next run uses it (LINK_UP_VERSION=auto)", minimum
                )
                changes = {"version": minimum}
            else:
                changes = {"rejected_version": exc.sent_version, "version_retry_at": now + VERSION_RETRY_S}
        elif isinstance(exc, BACKOFF_ERRORS):
            failures = account.backoff_failures + 1
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                delay = min(float(retry_after), RETRY_AFTER_CAP_S)
            else:
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1) * (0.8 + 0.4 * self.jitter()))
            changes = {"backoff_until": int(now + delay), "backoff_failures": failures, "backoff_reason": exc.reason}
        else:
            return
        self._save_account(key, **changes)

    # --- ticket --------------------------------------------------------------------------------

    def _login(self, key: str, creds: Credentials) -> Ticket:
        self._check_login_allowed(creds, self.account)
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
        self._save_account(
            key,
            ticket=ticket,
            region=ticket.region,
            creds_tag=self._tag,
            bad_credentials_version=None,
            bad_credentials_tag=None,
            login_not_before=None,
            login_block_reason=None,
        )
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
        state = self.store.load(account_key(creds.username))
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
            self._check_breakers(self.account)
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
        account = self.account
        if account.backoff_failures or account.backoff_until or account.rejected_version or account.version_retry_at:
            # LibreLink Up answered again: the back-off is over.
            self._save_account(
                state.key,
                backoff_until=None,
                backoff_failures=0,
                backoff_reason=None,
                rejected_version=None,
                version_retry_at=None,
            )
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
            minimum = exc.minimum_version
            if not (self.version_auto and not self._adopted and minimum and minimum.startswith("4.")):
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
        report.readings_seen = len(graph.history) + (1 if graph.current else 0)
        report.skipped_items = graph.skipped_items
        # From here on only plausible readings exist: no other one is uploaded, enters the ledger, moves a
        # cut-off, serves as another reading's trend reference or decides whether the data is stale. An
        # earlier version's future instants are forgotten.
        graph = screen(graph, self.clock()).graph
        report.implausible = graph.implausible_items
        healed = heal(stored, self.clock())
        healing, stored = healed is not stored, healed
        # Every entry's direction is decided here, before anything is chosen or sent (trends.py); the
        # current reading is remembered with the next write, for the arrow of the next one.
        graph = with_directions(graph, stored.recent, self.trend_arrows)
        if graph.current is not None:
            stored = stored.with_recent([(graph.current.epoch_s, graph.current.sgv)])
        newest = max(
            [r.epoch_ms for r in graph.history] + ([graph.current.epoch_ms] if graph.current else []), default=None
        )
        if newest is not None:
            report.newest_reading_age_s = round(self.clock() - newest / 1000, 1)

        sink = self.sinks(target, stored)
        try:
            self._deferred = None
            new, found, checked = self._select(graph, stored, sink)
            stored = stored.checked_at_least(checked)
            accepted: list[int] = []
            try:
                if new:
                    report.uploaded = sink.upload(new)
                    accepted = [r.epoch_s for r in new]
                    report.gap_filled = sum(1 for r in new if r.source == "graph")
            except NightscoutPartialUpload as partial:
                # record exactly what Nightscout acknowledged; the rest is retried next run
                accepted = [ms // 1000 for ms in partial.accepted]
                report.uploaded = len(accepted)
                self._record(state.key, stored, accepted + found, sink)
                raise
            if self._deferred is not None:
                # Said only when the upload worked: if Nightscout is down, the upload's error says it all.
                log.warning(
                    "Could not read which readings Nightscout already holds (%s). This run uploaded only the "
                    "current reading; the %d gap readings from LibreLink Up's history follow on a later run.",
                    *self._deferred,
                    extra={"reason": "gap_fill_deferred"},
                )
            sensor = self._sensor_start(graph, stored, sink, report)
            changed = sensor != stored.sensor or self._jwt_of(sink) != (stored.jwt, stored.jwt_exp)
            if accepted or found or changed or checked or healing:
                # Only now, after Nightscout accepted them, does the state move forward.
                self._record(state.key, replace(stored, sensor=sensor), accepted + found, sink)
        except NightscoutError as exc:
            report.error = exc.reason
            report.failure = exc
            raise
        finally:
            self.report.nightscout_requests += sink.requests_made

    def _select(
        self, graph: Graph, stored: TargetState, sink: NightscoutSink
    ) -> tuple[list[Reading], list[int], int | None]:
        """What to upload, and the instants found in Nightscout to remember as covered.

        Only a run that would fill gaps from the history (first run, after an outage, a cold state) reads
        back what Nightscout already holds in that window, from any device, in one request; the steady
        state stays at one request or none. The instants found go into the ledger, so the next run does
        not read again for the same window. When the read fails, only the current reading is uploaded:
        the ledger then does not cover the gap, and the next run fills it.
        """
        new = select_new(graph, stored.uploaded)
        history = [r for r in new if r.source == "graph"]
        checked = stored.checked_until
        if not history or (checked is not None and all(r.epoch_s + GAP_S <= checked for r in history)):
            # Nothing to fill, or only gaps an earlier read-back already saw (they were empty then).
            return new, [], None
        since_ms = (min(r.epoch_s for r in history) - GAP_S) * 1000
        try:
            existing = sink.existing_sgv(since_ms)
        except NightscoutError as exc:
            self._deferred = (exc.message, len(history))  # told once the current reading is in (see _upload)
            return [r for r in new if r.source == "current"], [], None
        complete_s = existing.complete_since_ms // 1000
        covered_before = complete_s if complete_s > since_ms // 1000 else None
        chosen = select_new(graph, stored.uploaded, covered=existing.instants, covered_before=covered_before)
        # Only instants inside the graph's window: a future-dated entry (a wrong clock elsewhere) must not
        # move the ledger's horizon, which would hide the current readings from the selection.
        newest = max(r.epoch_s for r in [*graph.history, *([graph.current] if graph.current else [])])
        found = [t for t in existing.instants if t <= min(newest + GAP_S, latest_plausible_s(self.clock()))]
        if covered_before is not None:  # not seen, treated as covered: remember so no run reads for them again
            found += [r.epoch_s for r in history if r.epoch_s < covered_before]
        skipped = len(history) - sum(1 for r in chosen if r.source == "graph")
        if skipped:
            log.info(
                "Nightscout already holds readings near %d of the history points; they are not added again",
                skipped,
            )
        return chosen, found, int(self.clock())

    def _sensor_start(
        self, graph: Graph, stored: TargetState, sink: NightscoutSink, report: TargetReport
    ) -> str | None:
        """Post "Sensor Start" once per sensor, so Nightscout's sensor-age pill works."""
        sensor = graph.sensor
        if not self.sensor_start or sensor is None or not 1_000_000_000 < sensor.activated_at < 10_000_000_000:
            return stored.sensor
        marker = f"{sensor.serial}@{sensor.activated_at}"
        if marker == stored.sensor:
            return stored.sensor
        if self.clock() - sensor.activated_at < SENSOR_START_MIN_AGE_S:
            # A treatment younger than 10 minutes would snooze Nightscout's urgent alarms: a later run posts it.
            return stored.sensor
        try:
            sink.post_sensor_start(serial=sensor.serial, activated_at=sensor.activated_at)
        except (NightscoutUnauthorized, NightscoutRejected) as exc:
            # The token may upload readings but not treatments: say so once and do not ask again for
            # this sensor (every refused request slows Nightscout's answers to us: AUTH_FAIL_DELAY).
            log.warning(
                "Nightscout refused the Sensor Start treatment; give the token's role the treatments "
                "permissions named here, or set NIGHTSCOUT_SENSOR_START=false: %s",
                exc.message,
            )
            return marker
        except NightscoutError as exc:  # unreachable for now: the readings matter more; try again next run
            log.warning("Could not post the Sensor Start treatment: %s", exc.message)
            return stored.sensor
        report.sensor_start_posted = True
        return marker

    @staticmethod
    def _jwt_of(sink: NightscoutSink) -> tuple[str | None, int | None]:
        cache = getattr(sink, "jwt_cache", None)
        value = cache.get() if cache is not None else None
        return (value[0], value[1]) if value else (None, None)

    def _record(self, key: str, stored: TargetState, accepted: list[int], sink: NightscoutSink) -> None:
        jwt, jwt_exp = self._jwt_of(sink)
        if jwt is None:
            jwt, jwt_exp = stored.jwt, stored.jwt_exp
        self.store.record_upload(key, replace(stored, jwt=jwt, jwt_exp=jwt_exp), accepted)
