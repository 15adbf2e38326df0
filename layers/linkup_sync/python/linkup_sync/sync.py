"""One run of the bridge: load state -> ticket -> patient -> graph -> select -> upload -> save.

Pure logic behind the ports: it never touches HTTP, DynamoDB or Secrets Manager itself. The order of
the steps is the safety argument:
- the ticket is reused for its whole 180-day life (one login per lifetime, never a login loop);
- the upload state advances only after Nightscout accepted the readings, so a crash anywhere means the
  next run sends the same readings again (harmless: Nightscout upserts on the exact instant).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import LinkUpNoConnections, LinkUpPatientNotFound, LinkUpUnauthorized
from .ports import Clock, Credentials, Graph, LinkUpSource, NightscoutSink, Ticket
from .selection import select_new
from .state.model import AccountState, StateStore, StoredState, account_key

log = logging.getLogger("linkup_sync")


def short_hash(value: str) -> str:
    """A stable, non-reversible label for a patient in logs and metrics (never the name or the id)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


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
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
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
    ) -> None:
        self.source = source
        self.sink = sink
        self.store = store
        self.clock = clock
        self.region = region
        self.connection = connection
        self.report = RunReport()

    # --- ticket --------------------------------------------------------------------------------

    def _login(self, creds: Credentials, account: AccountState) -> Ticket:
        region = account.region or self.region
        self.report.logins += 1
        ticket = self.source.login(creds.username, creds.password, region)
        if ticket.region != region:
            log.info("LibreLink Up moved the account to region %s; remembered for later runs", ticket.region.upper())
        return ticket

    # --- patient -------------------------------------------------------------------------------

    def _choose_patient(self, ticket: Ticket, account: AccountState) -> str:
        if self.connection:
            return self.connection
        if account.patient_id:
            return account.patient_id
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
        account = state.account
        changed = False

        ticket = account.ticket if account.ticket and account.ticket.usable_at(self.clock()) else None
        if ticket is None:
            ticket = self._login(creds, account)
            account = replace(account, ticket=ticket, region=ticket.region)
            changed = True

        patient_id = self._choose_patient(ticket, account)
        if not self.connection and account.patient_id != patient_id:
            account = replace(account, patient_id=patient_id)
            changed = True
        if changed:
            account = self.store.save_account(state.key, account)

        graph, account = self._graph(creds, state, account, ticket, patient_id)
        self._upload(state, graph)
        return self.report

    def _graph(
        self, creds: Credentials, state: StoredState, account: AccountState, ticket: Ticket, patient_id: str
    ) -> tuple[Graph, AccountState]:
        try:
            try:
                return self.source.graph(ticket, patient_id), account
            except LinkUpUnauthorized:
                # The stored ticket was revoked: forget it, log in once, retry once. A second 401 ends
                # the run (raised to the caller), so a revoked account can never cause a login loop.
                log.warning("LibreLink Up refused the stored ticket; logging in again once")
                account = self.store.save_account(state.key, replace(account, ticket=None))
                ticket = self._login(creds, account)
                account = self.store.save_account(state.key, replace(account, ticket=ticket, region=ticket.region))
                return self.source.graph(ticket, patient_id), account
        except LinkUpPatientNotFound:
            known = [c.patient_id for c in self.source.connections(ticket)]
            if not self.connection and account.patient_id == patient_id:
                # The remembered patient is gone (invitation withdrawn): forget it so the next run chooses again.
                self.store.save_account(state.key, replace(account, patient_id=None))
            raise LinkUpPatientNotFound(patient_id, known) from None

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
