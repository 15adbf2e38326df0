"""Issue 24 in the sync service (fakes): the directions reach Nightscout, the current readings behind the
next arrow are remembered in the same write, and no request or write is added."""

from __future__ import annotations

from linkup_sync.model import Credentials, Graph, Target
from linkup_sync.readings import NOT_COMPUTABLE, Reading
from linkup_sync.sync import SyncService
from tests.fakes import FakeLinkUp, FakeNightscout, MemoryStateStore

NOW = 1_800_000_000
CREDS = Credentials(
    username="f@example.invalid",
    password="pw-123",
    targets=(Target(patient_id=None, nightscout_url="https://ns", nightscout_token="t"),),
)


def graph(now: int, sgv: int, arrow: str) -> Graph:
    """A patient rising 3.6 mg/dL/min: history every 5 minutes up to 17 minutes before `now`."""
    history = tuple(
        Reading((now - 1020 - 300 * i) * 1000, sgv - round(3.6 * (17 + 5 * i)), NOT_COMPUTABLE, "graph")
        for i in range(8)
    )
    return Graph(patient_id="p1", current=Reading(now * 1000, sgv, arrow, "current"), history=history)


def run(llu: FakeLinkUp, ns: FakeNightscout, store: MemoryStateStore, now: int, mode: str = "derived") -> None:
    SyncService(
        source=llu, sinks=lambda target, stored: ns, store=store, clock=lambda: now, region="eu", trend_arrows=mode
    ).run(CREDS)


def test_every_entry_gets_a_direction_and_a_fast_rise_a_double_arrow() -> None:
    llu, ns, store = FakeLinkUp(connection_ids=["p1"]), FakeNightscout(), MemoryStateStore()
    llu.graphs["p1"] = graph(NOW, 300, "SingleUp")
    run(llu, ns, store, NOW)
    first = {ms // 1000: r.direction for ms, r in ns.entries.items()}
    assert first[NOW] == "SingleUp"  # nothing in the 15 minutes before: Abbott's arrow as it came
    oldest = min(first)
    assert first[oldest] == NOT_COMPUTABLE  # the oldest history point has nothing before it
    assert {d for t, d in first.items() if t not in (oldest, NOW)} == {"DoubleUp"}
    (target,) = store.targets.values()
    assert target.recent == ((NOW, 300),)

    writes = store.writes
    llu.graphs["p1"] = graph(NOW + 300, 318, "SingleUp")
    run(llu, ns, store, NOW + 300)
    assert ns.entries[(NOW + 300) * 1000].direction == "DoubleUp"  # 18 mg/dL in 5 minutes
    assert store.writes == writes + 1  # the remembered reading rides on the upload's write
    (target,) = store.targets.values()
    assert target.recent == ((NOW, 300), (NOW + 300, 318))


def test_libre_sends_abbotts_arrow_unchanged_and_the_same_requests_and_writes() -> None:
    counts = {}
    for mode in ("derived", "libre"):
        llu, ns, store = FakeLinkUp(connection_ids=["p1"]), FakeNightscout(), MemoryStateStore()
        for step in range(3):
            llu.graphs["p1"] = graph(NOW + 300 * step, 300 + 18 * step, "SingleUp")
            run(llu, ns, store, NOW + 300 * step, mode)
        currents = [ns.entries[(NOW + 300 * step) * 1000].direction for step in range(3)]
        expected = ["SingleUp"] * 3 if mode == "libre" else ["SingleUp", "DoubleUp", "DoubleUp"]
        assert currents == expected
        history = [r.direction for ms, r in ns.entries.items() if r.source == "graph"]
        assert history.count(NOT_COMPUTABLE) == 1 and history.count("DoubleUp") == len(history) - 1
        counts[mode] = (llu.requests, ns.requests_made, store.reads, store.writes)
    assert counts["derived"] == counts["libre"]


def test_a_run_with_nothing_new_writes_nothing_for_the_arrows() -> None:
    llu, ns, store = FakeLinkUp(connection_ids=["p1"]), FakeNightscout(), MemoryStateStore()
    llu.graphs["p1"] = graph(NOW, 300, "SingleUp")
    run(llu, ns, store, NOW)
    writes = store.writes
    run(llu, ns, store, NOW + 30)  # the same current reading again: nothing to upload, nothing to write
    assert store.writes == writes
