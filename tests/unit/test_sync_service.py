from __future__ import annotations

import pytest

from linkup_sync.errors import LinkUpNoConnections, LinkUpPatientNotFound, LinkUpUnauthorized, NightscoutUnreachable
from linkup_sync.ports import Credentials, Graph, Target
from linkup_sync.readings import Reading
from linkup_sync.state.model import account_key, target_id
from linkup_sync.sync import SyncService, short_hash
from tests.fakes import FakeLinkUp, FakeNightscout, MemoryStateStore

NOW = 1_800_000_000
CREDS = Credentials(
    username="f@example.invalid",
    password="pw-123",
    targets=(Target(patient_id=None, nightscout_url="https://ns", nightscout_token="t"),),
)


def g(patient: str, current_t: int, history_ts: list[int]) -> Graph:
    return Graph(
        patient_id=patient,
        current=Reading(current_t * 1000, 120, "Flat", "current"),
        history=tuple(Reading(t * 1000, 110, "NOT COMPUTABLE", "graph") for t in history_ts),
    )


def service(llu: FakeLinkUp, ns: FakeNightscout, store: MemoryStateStore, **kw: object) -> SyncService:
    return SyncService(source=llu, sinks=lambda target, stored: ns, store=store, clock=lambda: NOW, region="eu", **kw)  # type: ignore[arg-type]


def test_first_run_logs_in_discovers_patient_and_uploads() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600, NOW - 3300])})
    ns, store = FakeNightscout(), MemoryStateStore()
    report = service(llu, ns, store).run(CREDS)
    assert llu.requests == ["login", "connections", "graph"]
    assert report.uploaded == 3 and report.gap_filled == 2 and report.logins == 1
    assert report.targets[0].patient == short_hash("p1")
    assert report.newest_reading_age_s == 60
    assert sorted(ns.entries) == [(NOW - 3600) * 1000, (NOW - 3300) * 1000, (NOW - 60) * 1000]


def test_steady_state_is_one_graph_request_and_no_duplicate() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    llu.requests.clear()
    report = service(llu, ns, store).run(CREDS)
    assert llu.requests == ["graph"]
    assert report.uploaded == 0 and ns.requests_made == 1  # nothing new: no second POST


def test_nightscout_failure_does_not_advance_state() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600])})
    ns, store = FakeNightscout(down=True), MemoryStateStore()
    with pytest.raises(NightscoutUnreachable):
        service(llu, ns, store).run(CREDS)
    assert store.targets == {}
    ns.down = False
    report = service(llu, ns, store).run(CREDS)
    assert report.uploaded == 2 and llu.logins == 1  # the ticket was kept although the upload failed


def test_configured_connection_skips_discovery_and_unknown_id_lists_known() -> None:
    llu = FakeLinkUp(connection_ids=["p1", "p2"], graphs={"p1": g("p1", NOW - 60, [])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store, connection="p1").run(CREDS)
    assert "connections" not in llu.requests
    with pytest.raises(LinkUpPatientNotFound) as err:
        service(llu, ns, store, connection="p9").run(CREDS)
    assert "p1, p2" in str(err.value) and "p9" in str(err.value)


def test_several_connections_take_the_first_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    llu = FakeLinkUp(connection_ids=["p2", "p1"], graphs={"p1": g("p1", NOW - 60, []), "p2": g("p2", NOW - 60, [])})
    ns, store = FakeNightscout(), MemoryStateStore()
    report = service(llu, ns, store).run(CREDS)
    assert report.targets[0].patient == short_hash("p2")
    assert "p2, p1" in caplog.text and "LINK_UP_CONNECTION" in caplog.text
    llu.requests.clear()
    service(llu, ns, store).run(CREDS)
    assert llu.requests == ["graph"]  # the patient is remembered


def test_no_connections_is_a_clear_error() -> None:
    with pytest.raises(LinkUpNoConnections):
        service(FakeLinkUp(), FakeNightscout(), MemoryStateStore()).run(CREDS)


def test_unauthorized_graph_relogs_once_and_retries_once() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    llu.requests.clear()
    llu.unauthorized_next = 1
    report = service(llu, ns, store).run(CREDS)
    assert llu.requests == ["graph", "login", "graph"]
    assert report.logins == 1
    stored = store.accounts[account_key(CREDS.username)]
    assert stored.ticket is not None and stored.ticket.token == "tok-2"


def test_second_unauthorized_ends_the_run_without_a_loop() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    llu.requests.clear()
    llu.unauthorized_next = 5
    with pytest.raises(LinkUpUnauthorized):
        service(llu, ns, store).run(CREDS)
    assert llu.requests == ["graph", "login", "graph"]


def test_expiring_ticket_is_renewed_before_it_dies() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [])}, expires=NOW + 3600)
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    service(llu, ns, store).run(CREDS)
    assert llu.logins == 2  # a ticket that expires within a day is not used


def test_concurrent_write_is_merged_not_lost() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600])})
    ns, store = FakeNightscout(), MemoryStateStore(conflict_next=1)
    service(llu, ns, store).run(CREDS)
    target = store.targets[(account_key(CREDS.username), target_id("p1", "https://ns"))]
    assert target.uploaded == (NOW - 3600, NOW - 60)
