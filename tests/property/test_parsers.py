"""Property-based tests (hypothesis): any input gives a valid result or a typed error, never anything else.

- LibreLink Up: timestamps (round trips, incl. 12 AM/PM and unpadded fields; arbitrary strings), glucose
  items, whole graph / connections / login replies, and `classify` on arbitrary status, content type and
  bytes.
- (Nightscout: the v1 and v3 uploaders against a stub server are in tests/clients/test_nightscout_replies.py,
  because they open a loopback socket.)
- selection.select_new: idempotent, sorted, never two readings within 150 s, no current reading left out,
  no history point left uncovered.

Example counts are bounded so the file runs in a few seconds.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from linkup_sync.errors import LinkUpError, LinkUpMalformedResponse
from linkup_sync.librelinkup import parsing, replies
from linkup_sync.model import Connection, Graph, Ticket
from linkup_sync.plausibility import SGV_MAX
from linkup_sync.readings import TREND_DIRECTIONS, Reading
from linkup_sync.selection import GAP_S, KEEP_S, merge_ledger, select_new

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIRECTIONS = {*TREND_DIRECTIONS.values(), "NOT COMPUTABLE"}

# --- strategies ---------------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True) | st.text(max_size=30)
)
json_like = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
instants = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.just(UTC)
)


@st.composite
def llu_timestamps(draw: st.DrawFn, moment: datetime | None = None) -> tuple[str, int]:
    """(text, epoch seconds): LibreLink Up's M/D/YYYY h:mm:ss AM|PM, fields padded or not."""
    dt = (moment or draw(instants)).replace(microsecond=0)
    hour12 = dt.hour % 12 or 12
    pad = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    month = f"{dt.month:02d}" if pad[0] else str(dt.month)
    day = f"{dt.day:02d}" if pad[1] else str(dt.day)
    hour = f"{hour12:02d}" if pad[2] else str(hour12)
    text = f"{month}/{day}/{dt.year} {hour}:{dt.minute:02d}:{dt.second:02d} {'AM' if dt.hour < 12 else 'PM'}"
    return text, int(dt.timestamp())


values = st.one_of(
    st.integers(-5, 1200), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=5), st.none()
)


@st.composite
def glucose_items(draw: st.DrawFn) -> Any:
    """Mostly plausible GlucoseItems with random damage; sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_like)
    item: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        item["FactoryTimestamp"] = draw(llu_timestamps())[0] if draw(st.integers(0, 4)) else draw(json_scalars)
    if draw(st.booleans()):
        item["Timestamp"] = draw(llu_timestamps())[0] if draw(st.booleans()) else draw(json_scalars)
    if draw(st.integers(0, 5)):
        item["ValueInMgPerDl"] = draw(values)
    if draw(st.booleans()):
        item["TrendArrow"] = draw(st.integers(-1, 8) | json_scalars)
    return item


@st.composite
def graph_payloads(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_like)
    connection: dict[str, Any] = {}
    if draw(st.booleans()):
        connection[draw(st.sampled_from(["glucoseMeasurement", "glucoseItem"]))] = draw(glucose_items())
    if draw(st.booleans()):
        connection["sensor"] = draw(st.fixed_dictionaries({"sn": json_scalars, "a": json_scalars}) | json_like)
    data: dict[str, Any] = {"connection": connection if draw(st.integers(0, 5)) else draw(json_like)}
    if draw(st.integers(0, 3)):
        data["graphData"] = draw(st.lists(glucose_items(), max_size=6)) if draw(st.integers(0, 4)) else draw(json_like)
    if draw(st.booleans()):
        data["activeSensors"] = draw(st.lists(st.fixed_dictionaries({"sensor": json_like}), max_size=2) | json_like)
    return {"status": 0, "data": data if draw(st.integers(0, 7)) else draw(json_like)}


@st.composite
def login_payloads(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 7)) == 0:
        return draw(json_like)
    ticket = {
        "token": draw(st.text(max_size=40) | json_scalars),
        "expires": draw(json_scalars | st.integers(-5, 2**40)),
        "duration": 15552000000,
    }
    user = {"id": draw(st.text(max_size=40) | json_scalars)}
    data: dict[str, Any] = {
        "authTicket": ticket if draw(st.integers(0, 5)) else draw(json_like),
        "user": user if draw(st.integers(0, 5)) else draw(json_like),
    }
    if draw(st.integers(0, 4)) == 0:
        data = {"redirect": draw(json_scalars), "region": draw(json_scalars)}
    if draw(st.integers(0, 4)) == 0:
        data = {
            "step": {"type": draw(json_scalars), "componentName": draw(json_scalars)},
            "authTicket": {"token": draw(json_scalars)},
        }
    return {"status": draw(st.sampled_from([0, 2, 4, 429, 911, 920]) | json_scalars), "data": data}


def body_bytes(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_like.map(body_bytes),
    graph_payloads().map(body_bytes),
    login_payloads().map(body_bytes),
    st.just(b""),
    st.just(b"<html><h1>Error 1015</h1></html>"),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/html; charset=UTF-8", "text/plain", "", "JSON"]
    ),
    st.text(max_size=30),
)
statuses = st.one_of(st.sampled_from([200, 400, 401, 403, 404, 429, 430, 500, 502, 503, 911]), st.integers(0, 999))

# --- LibreLink Up timestamps ----------------------------------------------------------------------------


@FAST
@given(llu_timestamps())
@example(("1/1/2026 12:00:00 AM", 1767225600))  # midnight is 12 AM
@example(("1/1/2026 12:30:05 PM", 1767270605))  # half past noon is 12 PM
@example(("12/31/2025 11:59:59 PM", 1767225599))
@example(("2/29/2024 1:02:03 AM", 1709168523))
def test_timestamps_round_trip_to_the_right_instant(case: tuple[str, int]) -> None:
    text, expected = case
    assert parsing.parse_factory_timestamp(text) == expected


@FAST
@given(
    st.one_of(
        st.text(max_size=40),
        json_scalars,
        st.from_regex(r"\A[0-9]{1,3}/[0-9]{1,3}/[0-9]{4} [0-9]{1,3}:[0-9]{2}:[0-9]{2} (AM|PM)\Z"),
    )
)
@example("2/30/2026 1:00:00 AM")
@example("13/1/2026 1:00:00 AM")
@example("1/1/2026 0:00:00 AM")
@example("1/1/2026 13:00:00 PM")
@example("1/1/2026 1:60:00 PM")
def test_any_timestamp_text_gives_an_instant_or_a_value_error(value: Any) -> None:
    try:
        result = parsing.parse_factory_timestamp(value)
    except ValueError:
        return
    assert isinstance(result, int)
    moment = datetime.fromtimestamp(result, tz=UTC)  # a real instant, which reads back the same in canonical form
    canonical = f"{moment.month}/{moment.day}/{moment.year:04d} {moment.hour % 12 or 12}:{moment:%M:%S} {moment:%p}"
    assert parsing.parse_factory_timestamp(canonical) == result


# --- readings and whole replies -----------------------------------------------------------------------------


def assert_valid_reading(reading: Reading, source: str) -> None:
    assert reading.epoch_ms % 1000 == 0
    assert 40 <= reading.sgv <= SGV_MAX == 500 and isinstance(reading.sgv, int)
    assert reading.direction in DIRECTIONS
    assert reading.source == source
    assert reading.utc_offset_min is None or isinstance(reading.utc_offset_min, int)


@FAST
@given(glucose_items(), st.sampled_from(["current", "graph"]))
def test_any_glucose_item_gives_a_reading_or_a_value_error(item: Any, source: Any) -> None:
    try:
        reading = parsing.reading_from_item(item, source)
    except ValueError:
        return
    assert_valid_reading(reading, source)


@FAST
@given(graph_payloads())
def test_any_graph_reply_gives_a_graph_or_a_typed_error(payload: Any) -> None:
    try:
        graph = parsing.parse_graph("patient", payload)
    except LinkUpMalformedResponse:
        return
    assert isinstance(graph, Graph) and graph.patient_id == "patient"
    if graph.current is not None:
        assert_valid_reading(graph.current, "current")
    for point in graph.history:
        assert_valid_reading(point, "graph")
    assert [p.epoch_ms for p in graph.history] == sorted(p.epoch_ms for p in graph.history)
    assert graph.skipped_items >= 0
    assert graph.sensor is None or (graph.sensor.serial and graph.sensor.activated_at > 0)


@FAST
@given(
    st.one_of(
        json_like,
        st.fixed_dictionaries(
            {
                "status": st.just(0),
                "data": st.lists(
                    st.fixed_dictionaries({"patientId": json_scalars, "firstName": json_scalars, "sensor": json_like}),
                    max_size=4,
                ),
            }
        ),
    )
)
def test_any_connections_reply_gives_connections_or_a_typed_error(payload: Any) -> None:
    try:
        connections = parsing.parse_connections(payload)
    except LinkUpMalformedResponse:
        return
    assert all(isinstance(c, Connection) and c.patient_id and c.patient_id == c.patient_id.strip() for c in connections)


@FAST
@given(login_payloads(), st.sampled_from(["eu", "us", "eu2"]))
def test_any_login_reply_gives_a_ticket_a_redirect_a_step_or_a_typed_error(payload: Any, region: str) -> None:
    try:
        step = parsing.login_step(payload)
        parsing.login_redirect(payload)  # any raw value (regions.redirect_region validates it) or None
        ticket = parsing.parse_login(payload, region)
    except LinkUpMalformedResponse:
        return
    assert step is None or (isinstance(step[0], str) and step[1])
    assert isinstance(ticket, Ticket) and ticket.token and ticket.expires > 0 and ticket.region == region
    assert len(ticket.account_id) == 64
    assert repr(ticket) == f"Ticket(region={region!r}, expires={ticket.expires})"  # never the token


@settings(max_examples=300, deadline=None)
@given(
    statuses,
    content_types,
    bodies,
    st.booleans(),
    st.one_of(st.none(), st.text(max_size=8)),
    st.sampled_from([frozenset(), frozenset({"tou", "pp"})]),
)
@example(429, "text/html", b"<html>1015</html>", False, "\u00b2", frozenset())  # Retry-After: byte 0xB2 ("²")
@example(200, None, b"", False, "\u0663", frozenset())  # an Arabic-Indic digit three
def test_classify_gives_a_json_object_or_a_typed_linkup_error(
    status: int,
    content_type: str | None,
    body: bytes,
    during_login: bool,
    retry_after: str | None,
    accept: frozenset[str],
) -> None:
    try:
        parsed = replies.classify(
            status,
            content_type,
            body,
            during_login=during_login,
            version="4.16.0",
            patient_id="p",
            retry_after=retry_after,
            accept_steps=accept,
        )
    except LinkUpError as exc:
        assert exc.message and exc.reason and str(exc) == exc.message
        return
    assert isinstance(parsed, dict)
    assert status == 200 and (parsed.get("status") == 0 or parsed.get("status") == 4)


# --- selection ----------------------------------------------------------------------------------------------

NOW = 1_795_730_978


@st.composite
def graphs_and_ledgers(draw: st.DrawFn) -> tuple[Graph, tuple[int, ...]]:
    """A graph as LibreLink Up sends it (whole seconds, history within 12 h) and a ledger of the last hours."""
    history_s = draw(st.lists(st.integers(NOW - 12 * 3600, NOW - 60), max_size=40))
    current_s = draw(st.one_of(st.none(), st.integers(NOW - 120, NOW)))
    ledger = draw(st.lists(st.integers(NOW - KEEP_S - 3600, NOW), max_size=40, unique=True))
    if draw(st.booleans()):  # a ledger that already holds some of the graph
        ledger += draw(st.lists(st.sampled_from(history_s), max_size=10)) if history_s else []
    history = tuple(Reading(epoch_ms=t * 1000, sgv=120, direction="Flat", source="graph") for t in history_s)
    current = (
        None if current_s is None else Reading(epoch_ms=current_s * 1000, sgv=130, direction="Flat", source="current")
    )
    return Graph(patient_id="p", current=current, history=history), tuple(sorted(set(ledger)))


@settings(max_examples=300, deadline=None)
@given(graphs_and_ledgers())
def test_select_new_invariants(case: tuple[Graph, tuple[int, ...]]) -> None:
    graph, ledger = case
    chosen = select_new(graph, ledger)
    instants = [r.epoch_s for r in chosen]
    assert instants == sorted(set(instants)), "sorted, each instant once"
    floor = ledger[-1] - KEEP_S if ledger else None
    # never an instant that was uploaded; history never next to an uploaded reading
    assert not set(instants) & set(ledger)
    for r in chosen:
        if r.source == "graph":
            assert not any(abs(r.epoch_s - t) <= GAP_S for t in ledger)
    # never two readings within GAP_S of each other, unless both are current readings
    for a, b in itertools.pairwise(chosen):
        assert b.epoch_s - a.epoch_s > GAP_S or a.source == b.source == "current"
    # every current reading not in the ledger is chosen (unless it is older than the ledger keeps)
    current = graph.current
    if current is not None and current.epoch_s not in ledger and (floor is None or current.epoch_s >= floor):
        assert current in chosen
    # nothing lost: every history point the ledger still covers is near an uploaded or chosen reading
    covered = sorted(set(ledger) | set(instants))
    for point in graph.history:
        if floor is None or point.epoch_s >= floor:
            assert any(abs(point.epoch_s - t) <= GAP_S for t in covered), point.epoch_s
    # idempotent: once recorded, the same graph selects nothing
    assert select_new(graph, merge_ledger(ledger, instants)) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**31), max_size=30), st.lists(st.integers(0, 2**31), max_size=30))
def test_merge_ledger_keeps_the_newest_13_hours_sorted_and_unique(old: list[int], new: list[int]) -> None:
    merged = merge_ledger(old, new)
    assert list(merged) == sorted(set(merged))
    if old or new:
        newest = max(old + new)
        assert merged[-1] == newest
        assert set(merged) == {t for t in set(old) | set(new) if t >= newest - KEEP_S}
