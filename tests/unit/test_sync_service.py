from __future__ import annotations

import pytest
from tools.simulators.clock import VirtualClock

from linkup_sync.errors import LinkUpNoConnections, LinkUpPatientNotFound, LinkUpUnauthorized, NightscoutUnreachable
from linkup_sync.model import Credentials, Graph, Target
from linkup_sync.readings import Reading
from linkup_sync.report import short_hash
from linkup_sync.state.model import account_key, target_id
from linkup_sync.sync import SyncService
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
    # the first run: one read-back (it fills gaps) and one POST; the second: nothing new, no request
    assert report.uploaded == 0 and ns.requests_made == 2


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


# --- gap filling next to data that is already there (issue #10) ---------------------------------------


def five_minute(start: int, end: int) -> list[int]:
    return list(range(start, end, 300))


def test_gap_fill_reads_back_once_and_adds_nothing_near_existing_entries() -> None:
    history = five_minute(NOW - 12 * 3600 + 17, NOW - 900)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, history)})
    ns, store = FakeNightscout(), MemoryStateStore()
    # another bridge's entries every 5 minutes, 40 s off ours, except for a 2-hour hole
    hole = (NOW - 6 * 3600, NOW - 4 * 3600)
    ns.foreign = {(t + 40) * 1000 for t in five_minute(NOW - 12 * 3600, NOW - 600) if not hole[0] <= t < hole[1]}
    report = service(llu, ns, store).run(CREDS)
    assert len(ns.reads) == 1 and ns.reads[0] == (history[0] - 150) * 1000
    added = sorted(ms // 1000 for ms in ns.entries)
    foreign = sorted(ms // 1000 for ms in ns.foreign)
    assert all(min(abs(t - f) for f in foreign) > 150 for t in added if t != NOW - 60)
    hole_points = [t for t in history if hole[0] + 150 < t < hole[1] - 150]
    assert set(hole_points) <= set(added)  # the hole is filled
    assert report.gap_filled == len(added) - 1 and NOW - 60 in added  # plus the current reading
    # the next run neither reads back again nor adds anything: the found entries are remembered
    ns.requests_made = 0
    report = service(llu, ns, store).run(CREDS)
    assert ns.requests_made == 0 and report.uploaded == 0 and len(ns.reads) == 1


def test_steady_state_does_not_read_back() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    # the clock moves with the readings (issue 21: a reading dated after the clock is not sent)
    clock = VirtualClock(NOW)
    for minute in range(1, 13):  # a new current reading every 5 minutes, history already covered
        llu.graphs["p1"] = g("p1", NOW - 60 + 300 * minute, [NOW - 3600])
        ns.requests_made = 0
        clock.advance(300)
        later = SyncService(source=llu, sinks=lambda target, stored: ns, store=store, clock=clock, region="eu")
        report = later.run(CREDS)
        assert report.uploaded == 1 and ns.requests_made == 1
    assert len(ns.reads) == 1


def test_failed_read_back_uploads_the_current_reading_and_fills_the_gap_next_run() -> None:
    history = five_minute(NOW - 3 * 3600, NOW - 900)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, history)})
    ns, store = FakeNightscout(read_fails=True), MemoryStateStore()
    report = service(llu, ns, store).run(CREDS)
    assert report.uploaded == 1 and report.gap_filled == 0
    assert sorted(ns.entries) == [(NOW - 60) * 1000]
    ledger = next(iter(store.targets.values())).uploaded
    assert ledger == (NOW - 60,)  # the state does not claim the gap
    ns.read_fails = False
    report = service(llu, ns, store).run(CREDS)
    assert report.gap_filled == len(history) and len(ns.reads) == 2
    assert sorted(ns.entries) == sorted([t * 1000 for t in history] + [(NOW - 60) * 1000])


def test_current_reading_is_uploaded_even_next_to_an_existing_entry() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600])})
    ns, store = FakeNightscout(foreign={(NOW - 3600 + 20) * 1000, (NOW - 90) * 1000}), MemoryStateStore()
    report = service(llu, ns, store).run(CREDS)
    assert report.uploaded == 1 and report.gap_filled == 0
    assert (NOW - 60) * 1000 in ns.entries and (NOW - 3600) * 1000 not in ns.entries


def test_future_dated_entries_do_not_move_the_ledger() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [NOW - 3600, NOW - 1800])})
    ns, store = FakeNightscout(foreign={(NOW + 86400) * 1000, (NOW - 3600 + 10) * 1000}), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    ledger = next(iter(store.targets.values())).uploaded
    assert max(ledger) == NOW - 60 and NOW - 3600 + 10 in ledger
    llu.graphs["p1"] = g("p1", NOW + 240, [NOW - 3600, NOW - 1800])
    report = service(llu, ns, store).run(CREDS)
    assert report.uploaded == 1  # the next current reading is still new


def test_full_read_back_page_leaves_older_points_alone() -> None:
    from linkup_sync.model import Existing

    history = five_minute(NOW - 6 * 3600, NOW - 900)
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, history)})
    ns, store = FakeNightscout(), MemoryStateStore()
    cut = NOW - 3 * 3600  # the page ended here: older entries may exist that were not returned
    ns.existing_sgv = lambda since_ms: Existing(instants=(cut,), complete_since_ms=cut * 1000)  # type: ignore[method-assign]
    report = service(llu, ns, store).run(CREDS)
    added = sorted(ms // 1000 for ms in ns.entries)
    assert all(t >= cut for t in added) and report.gap_filled > 0
    assert all(abs(t - cut) > 150 for t in added)
    ns.existing_sgv = lambda since_ms: pytest.fail("no second read-back")  # type: ignore[method-assign]
    assert service(llu, ns, store).run(CREDS).uploaded == 0


def test_lag_window_after_a_gap_fill_needs_no_second_read_back() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, five_minute(NOW - 3600, NOW - 900))})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)
    assert len(ns.reads) == 1
    # five minutes later the lagging history shows points between the last one and the first current reading
    llu.graphs["p1"] = g("p1", NOW + 240, five_minute(NOW - 3600, NOW - 300))
    later = SyncService(source=llu, sinks=lambda t, s: ns, store=store, clock=lambda: NOW + 300, region="eu")
    report = later.run(CREDS)
    assert report.gap_filled == 2 and len(ns.reads) == 1  # filled without asking Nightscout again
    # a gap newer than what the read-back saw (a stalled phone, an outage) is asked about again
    llu.graphs["p1"] = g("p1", NOW + 3000, five_minute(NOW - 3600, NOW + 2400))
    again = SyncService(source=llu, sinks=lambda t, s: ns, store=store, clock=lambda: NOW + 3000, region="eu")
    assert again.run(CREDS).gap_filled > 0 and len(ns.reads) == 2


# --- couldNotLoadPatient names the id and where it came from (issue #10) ------------------------------


def test_patient_not_found_names_the_remembered_id() -> None:
    llu = FakeLinkUp(connection_ids=["p1"], graphs={"p1": g("p1", NOW - 60, [])})
    ns, store = FakeNightscout(), MemoryStateStore()
    service(llu, ns, store).run(CREDS)  # p1 is discovered and remembered
    del llu.graphs["p1"]  # LibreLink Up answers couldNotLoadPatient for it now
    with pytest.raises(LinkUpPatientNotFound) as err:
        service(llu, ns, store).run(CREDS)
    assert "The patient id p1 (remembered from an earlier run" in err.value.message
    assert err.value.origin == "remembered"
    llu.graphs["p1"] = g("p1", NOW + 240, [])  # a passing mistake: the next run simply goes on
    assert service(llu, ns, store).run(CREDS).uploaded == 1


def test_patient_not_found_names_the_setting_even_when_the_list_fails_too() -> None:
    class ListFails(FakeLinkUp):
        def connections(self, ticket: object) -> list[object]:  # type: ignore[override]
            raise LinkUpPatientNotFound("", [])  # couldNotLoadPatient on /llu/connections (a wrong host)

    llu = ListFails(connection_ids=["p1"])
    with pytest.raises(LinkUpPatientNotFound) as err:
        service(llu, FakeNightscout(), MemoryStateStore(), connection="0123abcd-0000").run(CREDS)
    assert err.value.patient_id == "0123abcd-0000"
    assert "The patient id 0123abcd-0000 (from the LINK_UP_CONNECTION setting)" in err.value.message
