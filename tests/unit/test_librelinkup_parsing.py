"""LibreLink Up parsing and response classification, against the recorded fixtures."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from linkup_sync.errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpError,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpMalformedResponse,
    LinkUpMissingHeader,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpServerError,
    LinkUpUnauthorized,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
)
from linkup_sync.librelinkup import parsing
from linkup_sync.librelinkup.parsing import (
    parse_connections,
    parse_factory_timestamp,
    parse_graph,
    parse_login,
    reading_from_item,
)
from linkup_sync.librelinkup.regions import (
    DEFAULT_URL_TEMPLATE,
    REGIONS,
    base_url,
    normalize_region,
    redirect_region,
)
from linkup_sync.librelinkup.replies import classify
from linkup_sync.librelinkup.versions import version_key
from linkup_sync.plausibility import ImplausibleValue
from linkup_sync.readings import NOT_COMPUTABLE
from tests.support.librelinkup import (
    ACCOUNT_ID,
    INDEX,
    PATIENT,
    USER_ID,
    fixture_bytes,
    fixture_json,
    fixture_meta,
)


def utc_s(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/30/2022 4:47:40 PM", 1672418860),  # docs/librelinkup-api.md §11 test vector (TSL)
        ("5/21/2022 1:38:50 PM", utc_s(2022, 5, 21, 13, 38, 50)),
        ("11/9/2024 3:19:00 PM", utc_s(2024, 11, 9, 15, 19, 0)),
        ("6/20/2023 12:49:13 AM", utc_s(2023, 6, 20, 0, 49, 13)),
        ("6/20/2023 12:49:13 PM", utc_s(2023, 6, 20, 12, 49, 13)),
        ("1/1/2025 12:00:00 AM", utc_s(2025, 1, 1, 0, 0, 0)),
        ("12/31/2025 11:59:59 PM", utc_s(2025, 12, 31, 23, 59, 59)),
        ("01/02/2025 01:02:03 AM", utc_s(2025, 1, 2, 1, 2, 3)),
        ("2/29/2024 1:00:00 AM", utc_s(2024, 2, 29, 1, 0, 0)),
    ],
)
def test_factory_timestamp(text: str, expected: int) -> None:
    assert parse_factory_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2025-11-26T21:00:24Z",
        "11/26/2025 21:00:24",
        "11/26/2025 9:00:24 pm",
        "11/26/2025 0:00:24 AM",
        "11/26/2025 13:00:24 PM",
        "13/26/2025 9:00:24 PM",
        "2/30/2025 9:00:24 PM",
        "11/26/2025 9:60:24 PM",
        "11/26/2025 9:00:24 PM UTC",
        " 11/26/2025 9:00:24 PM",
        "11/26/25 9:00:24 PM",
        None,
        1764190824,
    ],
)
def test_factory_timestamp_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_factory_timestamp(text)


# --- items ---------------------------------------------------------------------------------------


def item(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "FactoryTimestamp": "11/26/2025 9:00:24 PM",
        "Timestamp": "11/26/2025 10:00:24 PM",
        "type": 1,
        "ValueInMgPerDl": 152,
        "TrendArrow": 3,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def test_reading_from_item() -> None:
    r = reading_from_item(item(), "current")
    assert r.epoch_ms == utc_s(2025, 11, 26, 21, 0, 24) * 1000
    assert (r.sgv, r.direction, r.source, r.utc_offset_min) == (152, "Flat", "current", 60)
    assert r.iso_utc == "2025-11-26T21:00:24.000Z"


@pytest.mark.parametrize(
    ("arrow", "direction"),
    [
        (1, "SingleDown"),
        (2, "FortyFiveDown"),
        (3, "Flat"),
        (4, "FortyFiveUp"),
        (5, "SingleUp"),
        (0, NOT_COMPUTABLE),
        (None, NOT_COMPUTABLE),
        (..., NOT_COMPUTABLE),
        (True, NOT_COMPUTABLE),
    ],
)
def test_reading_direction(arrow: Any, direction: str) -> None:
    assert reading_from_item(item(TrendArrow=arrow), "current").direction == direction


# Issue 21 narrowed the range from 1..1000 to the sensor's 40..500 (LO and HI stay valid).
@pytest.mark.parametrize(("value", "sgv"), [(40, 40), (40.0, 40), (152.0, 152), (500, 500)])
def test_reading_value_kept(value: Any, sgv: int) -> None:
    assert reading_from_item(item(ValueInMgPerDl=value), "graph").sgv == sgv


@pytest.mark.parametrize(
    "value",
    [None, ..., "152", True, False, 0, -5, 1, 12, 39, 501, 1000, 1001, 152.5, float("nan"), float("inf"), [152]],
)
def test_reading_value_rejected_as_implausible(value: Any) -> None:
    with pytest.raises(ImplausibleValue):
        reading_from_item(item(ValueInMgPerDl=value), "graph")


def test_an_undated_item_is_malformed_not_implausible() -> None:
    with pytest.raises(ValueError) as caught:
        reading_from_item(item(FactoryTimestamp="soon", ValueInMgPerDl=1000), "graph")
    assert not isinstance(caught.value, ImplausibleValue)


def test_reading_offset_optional() -> None:
    assert reading_from_item(item(Timestamp=...), "graph").utc_offset_min is None
    assert reading_from_item(item(Timestamp="garbage"), "graph").utc_offset_min is None
    r = reading_from_item(item(Timestamp="11/26/2025 9:00:24 PM"), "graph")
    assert r.utc_offset_min == 0
    r = reading_from_item(item(Timestamp="11/27/2025 2:30:24 AM"), "graph")  # UTC+5:30
    assert r.utc_offset_min == 330


def test_reading_rejects_non_object() -> None:
    bad: object
    for bad in (None, [], "x", 5):
        with pytest.raises(ValueError):
            reading_from_item(bad, "graph")
    with pytest.raises(ValueError):
        reading_from_item(item(FactoryTimestamp=...), "graph")


# --- graph ---------------------------------------------------------------------------------------


def test_graph_fixture() -> None:
    payload = fixture_json("graph.json")
    g = parse_graph(PATIENT, payload)
    raw = payload["data"]["graphData"]
    assert g.patient_id == PATIENT
    assert g.skipped_items == 0
    assert len(g.history) == 141 == len(raw)
    assert g.history[0].epoch_ms == utc_s(2025, 11, 26, 9, 3, 23) * 1000
    assert g.history[-1].epoch_ms == utc_s(2025, 11, 26, 20, 43, 23) * 1000
    assert [r.epoch_ms for r in g.history] == sorted(r.epoch_ms for r in g.history)
    for reading, source in zip(g.history, raw, strict=True):
        assert reading.sgv == source["ValueInMgPerDl"]
        assert reading.epoch_ms == parse_factory_timestamp(source["FactoryTimestamp"]) * 1000
        assert reading.direction == NOT_COMPUTABLE
        assert reading.source == "graph"
        assert reading.utc_offset_min == 60
    assert g.history[0].sgv == 77 and g.history[-1].sgv == 134
    # 12 PM is noon
    noon = [r for r, s in zip(g.history, raw, strict=True) if s["FactoryTimestamp"] == "11/26/2025 12:03:23 PM"]
    assert noon[0].epoch_ms == utc_s(2025, 11, 26, 12, 3, 23) * 1000
    assert g.current is not None
    assert g.current.epoch_ms == utc_s(2025, 11, 26, 21, 0, 24) * 1000
    assert (g.current.sgv, g.current.direction, g.current.source) == (152, "Flat", "current")
    assert g.sensor is not None
    assert (g.sensor.serial, g.sensor.activated_at) == ("0ETESTSN01", 1763660962)


def test_graph_no_data_fixture() -> None:
    g = parse_graph(PATIENT, fixture_json("graph-no-data.json"))
    assert g.history == ()
    assert g.current is not None and g.current.sgv == 152
    assert g.sensor is None
    assert g.skipped_items == 0


def test_graph_optional_parts_missing() -> None:
    payload = fixture_json("graph.json")
    data = payload["data"]
    del data["graphData"], data["activeSensors"], data["connection"]["glucoseMeasurement"]
    g = parse_graph(PATIENT, payload)
    assert g.history == ()
    assert g.current is not None  # from glucoseItem
    assert g.sensor is not None and g.sensor.serial == "0ETESTSN01"  # from connection.sensor
    del data["connection"]["glucoseItem"]
    data["connection"]["sensor"] = None
    g = parse_graph(PATIENT, payload)
    assert (g.current, g.sensor, g.skipped_items) == (None, None, 0)
    g = parse_graph(PATIENT, {"status": 0, "data": {}})
    assert (g.current, g.history, g.sensor) == (None, (), None)
    g = parse_graph(PATIENT, {"status": 0, "data": {"graphData": None, "connection": None}})
    assert g.history == ()


def test_graph_active_sensor_last_wins() -> None:
    payload = fixture_json("graph.json")
    first = copy.deepcopy(payload["data"]["activeSensors"][0])
    first["sensor"]["sn"] = "OLDSENSOR1"
    payload["data"]["activeSensors"].insert(0, first)
    assert parse_graph(PATIENT, payload).sensor.serial == "0ETESTSN01"  # type: ignore[union-attr]


def test_graph_malformed_items_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    payload = fixture_json("graph.json")
    items = payload["data"]["graphData"]
    items[3]["FactoryTimestamp"] = "2025-11-26 10:00"
    items[10]["ValueInMgPerDl"] = None
    items[20] = "not an item"
    del items[30]["FactoryTimestamp"]
    items[40]["ValueInMgPerDl"] = "HI"
    payload["data"]["connection"]["glucoseMeasurement"]["ValueInMgPerDl"] = True
    with caplog.at_level(logging.WARNING, logger="linkup_sync"):
        g = parse_graph(PATIENT, payload)
    assert len(g.history) == 136
    assert g.current is None
    # Issue 21: items without a usable date stay "skipped"; dated items whose value is no sensor's (null,
    # "HI", true) are dropped as implausible. Before, all six counted as skipped.
    assert (g.skipped_items, g.implausible_items) == (3, 3)
    assert len([r for r in caplog.records if r.name == "linkup_sync"]) == 6
    assert all(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    "payload",
    [None, [], "x", {"status": 0}, {"status": 0, "data": None}, {"status": 0, "data": []}, {"data": "x"}],
)
def test_graph_whole_response_malformed(payload: Any) -> None:
    with pytest.raises(LinkUpMalformedResponse):
        parse_graph(PATIENT, payload)


def test_graph_wrong_graphdata_type_is_no_history(caplog: pytest.LogCaptureFixture) -> None:
    payload = fixture_json("graph.json")
    payload["data"]["graphData"] = {"oops": 1}
    g = parse_graph(PATIENT, payload)
    assert g.history == () and g.current is not None
    assert "graphData" in caplog.text


# --- connections ---------------------------------------------------------------------------------


def test_connections_fixture() -> None:
    conns = parse_connections(fixture_json("connections.json"))
    assert len(conns) == 1
    c = conns[0]
    assert (c.patient_id, c.initials) == (PATIENT, "PE")
    assert c.sensor is not None and (c.sensor.serial, c.sensor.activated_at) == ("0ETESTSN01", 1763660962)


def test_connections_two_patients() -> None:
    conns = parse_connections(fixture_json("connections-two-patients.json"))
    assert [(c.patient_id, c.initials) for c in conns] == [
        (PATIENT, "PE"),
        ("2d4f6a8c-0e1b-4d3f-8a5c-7e9b1d3f5a60", "SS"),
    ]
    assert conns[1].sensor is None


def test_connections_empty_and_mmol() -> None:
    assert parse_connections(fixture_json("connections-empty.json")) == []
    assert len(parse_connections(fixture_json("connections-mmol.json"))) == 1


def test_connections_mmol_reading_is_mg_dl() -> None:
    conn = fixture_json("connections-mmol.json")["data"][0]
    assert conn["glucoseMeasurement"]["GlucoseUnits"] == 0
    r = reading_from_item(conn["glucoseMeasurement"], "current")
    assert r.sgv == 152  # ValueInMgPerDl, not Value 8.4
    g = parse_graph(PATIENT, {"status": 0, "data": {"connection": conn}})
    assert g.current is not None and g.current.sgv == 152


def test_connections_bad_items_skipped() -> None:
    payload = fixture_json("connections-two-patients.json")
    payload["data"].insert(0, {"firstName": "No", "lastName": "Id"})
    payload["data"].append("junk")
    payload["data"][1]["firstName"] = None
    conns = parse_connections(payload)
    assert [c.initials for c in conns] == ["E", "SS"]


@pytest.mark.parametrize("payload", [None, {"status": 0}, {"status": 0, "data": {}}, {"data": None}, []])
def test_connections_malformed(payload: Any) -> None:
    with pytest.raises(LinkUpMalformedResponse):
        parse_connections(payload)


# --- login ---------------------------------------------------------------------------------------


def test_login_fixture() -> None:
    t = parse_login(fixture_json("login-ok.json"), "eu")
    assert t.user_id == USER_ID
    assert t.account_id == ACCOUNT_ID
    assert t.expires == 1779742882
    assert t.region == "eu"
    assert t.token.startswith("eyJ")
    assert t.token not in repr(t) and ACCOUNT_ID not in repr(t)
    assert parse_login(fixture_json("auth-continue-ok.json"), "de").account_id == ACCOUNT_ID


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("authTicket"),
        lambda d: d["authTicket"].pop("token"),
        lambda d: d["authTicket"].update(token=""),
        lambda d: d["authTicket"].update(expires="soon"),
        lambda d: d["authTicket"].update(expires=True),
        lambda d: d.pop("user"),
        lambda d: d["user"].pop("id"),
        lambda d: d["user"].update(id=12),
    ],
)
def test_login_missing_parts(mutate: Any) -> None:
    payload = fixture_json("login-ok.json")
    mutate(payload["data"])
    with pytest.raises(LinkUpMalformedResponse) as exc:
        parse_login(payload, "eu")
    assert "eyJ" not in str(exc.value)


def test_login_redirect_detection() -> None:
    assert parsing.login_redirect(fixture_json("login-redirect.json")) == "eu"
    assert parsing.login_redirect(fixture_json("login-ok.json")) is None


# --- regions -------------------------------------------------------------------------------------


def test_regions() -> None:
    assert {"ae", "ap", "au", "ca", "de", "eu", "eu2", "fr", "jp", "us", "la", "ru", "cn"} == REGIONS
    assert normalize_region(" EU ") == "eu"
    assert normalize_region("GB") == normalize_region("uk") == "eu2"
    with pytest.raises(ValueError, match="EU2"):
        normalize_region("xx")
    assert base_url(DEFAULT_URL_TEMPLATE, "eu") == "https://api-eu.libreview.io"
    assert base_url(DEFAULT_URL_TEMPLATE, "eu2") == "https://api-eu2.libreview.io"
    assert base_url(DEFAULT_URL_TEMPLATE, "ru") == "https://api.libreview.ru"
    assert base_url(DEFAULT_URL_TEMPLATE, "cn") == "https://api-cn.myfreestyle.cn"
    assert base_url("http://127.0.0.1:8080/{region}/", "ru") == "http://127.0.0.1:8080/ru"
    assert redirect_region("EU2") == "eu2"
    assert redirect_region("gb") == "eu2"
    assert redirect_region("xy") == "xy"  # a new region: still a plain key
    for bad in ("evil.com/", "eu/../x", "", None, 5, "a" * 10, "eu@x"):
        assert redirect_region(bad) is None


# --- classification ------------------------------------------------------------------------------

EXPECTED: dict[str, Any] = {
    "login-ok.json": None,
    "login-redirect.json": None,
    "auth-continue-ok.json": None,
    "connections.json": None,
    "connections-two-patients.json": None,
    "connections-mmol.json": None,
    "connections-empty.json": None,
    "graph.json": None,
    "graph-no-data.json": None,
    "logbook.json": None,
    "notifications-settings.json": None,
    "config-country.json": None,
    "account.json": None,
    "login-tou.json": LinkUpActionRequired,
    "login-pp.json": LinkUpActionRequired,
    "login-verify-email.json": LinkUpActionRequired,
    "login-bad-credentials.json": LinkUpBadCredentials,
    "login-locked.json": LinkUpLocked,
    "rate-limited.json": LinkUpLocked,
    "error-401-invalid-jwt.json": LinkUpUnauthorized,
    "error-400-required-header-missing.json": LinkUpMissingHeader,
    "error-403-minimum-version.json": LinkUpVersionRejected,
    "error-couldnotloadpatient.json": LinkUpPatientNotFound,
    "error-maintenance-911.json": LinkUpMaintenance,
    "cloudflare-1015.html": LinkUpRateLimited,
}


def test_every_fixture_is_listed() -> None:
    assert set(EXPECTED) == set(INDEX)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_fixture(name: str) -> None:
    status, content_type = fixture_meta(name)
    during_login = name.startswith("login") or name.startswith("auth")
    expected = EXPECTED[name]
    if expected is None:
        out = classify(status, content_type, fixture_bytes(name), during_login=during_login)
        assert out == json.loads(fixture_bytes(name))
        assert out["status"] == 0
    else:
        with pytest.raises(expected) as exc:
            classify(
                status,
                content_type,
                fixture_bytes(name),
                during_login=during_login,
                version="4.12.0",
                patient_id=PATIENT,
            )
        assert "eyJ" not in str(exc.value)


def test_classify_details() -> None:
    with pytest.raises(LinkUpActionRequired) as a:
        classify(200, "application/json", fixture_bytes("login-tou.json"), during_login=True)
    assert a.value.step == "tou"
    with pytest.raises(LinkUpActionRequired) as a:
        classify(200, "application/json", fixture_bytes("login-pp.json"), during_login=True)
    assert a.value.step == "pp"
    with pytest.raises(LinkUpActionRequired) as a:
        classify(200, "application/json", fixture_bytes("login-verify-email.json"), during_login=True)
    assert a.value.step == "verifyEmail"
    with pytest.raises(LinkUpLocked) as lk:
        classify(200, "application/json", fixture_bytes("login-locked.json"), during_login=True)
    assert lk.value.lockout_seconds == 300
    with pytest.raises(LinkUpVersionRejected) as v:
        classify(403, "application/json", fixture_bytes("error-403-minimum-version.json"), version="4.12.0")
    assert (v.value.minimum_version, v.value.sent_version) == ("4.16.0", "4.12.0")
    with pytest.raises(LinkUpPatientNotFound) as p:
        classify(200, "application/json", fixture_bytes("error-couldnotloadpatient.json"), patient_id=PATIENT)
    assert p.value.patient_id == PATIENT and p.value.known == []


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("status", "ctype", "data", "error"),
    [
        # not JSON -> edge handling by HTTP status
        (403, "text/html", b"<html>Attention Required! | Cloudflare</html>", LinkUpBlocked),
        (429, "text/html", fixture_bytes("cloudflare-1015.html"), LinkUpRateLimited),
        (430, "", b"", LinkUpBlocked),
        (430, "application/json", b"", LinkUpBlocked),
        (403, "application/json", b"", LinkUpBlocked),
        (502, "text/html", b"<html>Bad gateway</html>", LinkUpServerError),
        (500, None, b"", LinkUpServerError),
        (911, "text/plain", b"maintenance", LinkUpMaintenance),
        (200, "text/html", b"<html>hello</html>", LinkUpMalformedResponse),
        (200, "application/json", b"", LinkUpMalformedResponse),
        (200, "application/json", b"   ", LinkUpMalformedResponse),
        (200, "application/json", fixture_bytes("graph.json")[:500], LinkUpMalformedResponse),
        (200, "application/json", b"\xff\xfe", LinkUpMalformedResponse),
        (404, "text/html", b"not found", LinkUpMalformedResponse),
        (401, "text/html", b"<html>401</html>", LinkUpUnauthorized),
        # JSON with HTTP errors
        (403, "application/json", body({"status": 403}), LinkUpBlocked),
        (429, "application/json", body({"message": "Too Many Requests"}), LinkUpRateLimited),
        (430, "application/json", body({}), LinkUpBlocked),
        (503, "application/json", body({"message": "x"}), LinkUpServerError),
        (911, "application/json", body({"status": 911}), LinkUpMaintenance),
        (200, "application/json", body({"status": 911}), LinkUpMaintenance),
        (400, "application/json", body({"message": "BadRequest"}), LinkUpMalformedResponse),
        (404, "application/json", body({"message": "nope"}), LinkUpMalformedResponse),
        (204, "application/json", body({"status": 0}), LinkUpMalformedResponse),
        # HTTP 200 bodies
        (200, "application/json", body([1, 2]), LinkUpMalformedResponse),
        (200, "application/json", body("x"), LinkUpMalformedResponse),
        (200, "application/json", body({"data": {}}), LinkUpMalformedResponse),
        (200, "application/json", body({"status": "0", "data": {}}), LinkUpMalformedResponse),
        (
            200,
            "application/json",
            body({"status": 7, "error": {"message": "weird"}}),
            LinkUpMalformedResponse,
        ),
        (
            200,
            "application/json",
            body({"status": 4, "error": {"message": "other"}}),
            LinkUpMalformedResponse,
        ),
        (200, "application/json", body({"status": 429, "data": {"message": "slow down"}}), LinkUpRateLimited),
        (200, "application/json", body({"status": 2}), LinkUpUnauthorized),  # not during login
    ],
)
def test_classify_table(status: int, ctype: str | None, data: bytes, error: type[LinkUpError]) -> None:
    with pytest.raises(error):
        classify(status, ctype, data)


def test_classify_retry_after() -> None:
    with pytest.raises(LinkUpRateLimited) as exc:
        classify(429, "text/html", fixture_bytes("cloudflare-1015.html"), retry_after="120")
    assert exc.value.retry_after == 120
    with pytest.raises(LinkUpRateLimited) as exc:
        classify(429, "text/html", b"x", retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert exc.value.retry_after is None
    with pytest.raises(LinkUpRateLimited) as exc:
        classify(429, "application/json", body({}), retry_after="999999999")
    assert exc.value.retry_after == 86400


def test_classify_login_specifics() -> None:
    with pytest.raises(LinkUpBadCredentials):
        classify(
            200,
            "application/json",
            body({"status": 2, "error": {"message": "incorrect username/password"}}),
            during_login=True,
        )
    with pytest.raises(LinkUpMalformedResponse):
        classify(401, "application/json", fixture_bytes("error-401-invalid-jwt.json"), during_login=True)
    locked = {"status": 429, "data": {"code": 60, "data": {"lockout": 1800}, "message": "locked"}}
    with pytest.raises(LinkUpLocked) as exc:
        classify(200, "application/json", body(locked), during_login=True)
    assert exc.value.lockout_seconds == 1800
    locked["data"]["data"] = {"lockout": "x"}  # type: ignore[index]
    with pytest.raises(LinkUpLocked) as exc:
        classify(200, "application/json", body(locked), during_login=True)
    assert exc.value.lockout_seconds == 300
    with pytest.raises(LinkUpLocked):
        classify(429, "application/json", body(locked), during_login=True)


def test_classify_never_echoes_token() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.secret-token-value-0123456789abcdef0123456789"
    for status in (200, 400, 403):
        with pytest.raises(LinkUpError) as exc:
            classify(status, "application/json", body({"status": 9, "error": {"message": token}, "data": token}))
        assert token not in str(exc.value)
        assert "secret-token" not in str(exc.value)
    with pytest.raises(LinkUpVersionContradicted) as v:  # an unreadable minimum is no minimum
        classify(
            403,
            "application/json",
            body({"status": 920, "data": {"minimumVersion": token}}),
            version="4.16.0",
        )
    assert token not in str(v.value)
    with pytest.raises(LinkUpMalformedResponse) as m:
        classify(200, "application/json", body({"status": 7, "error": {"message": "weird"}}))
    assert "body status 7" in str(m.value) and "weird" in str(m.value)


@pytest.mark.parametrize(
    ("minimum", "sent", "expected"),
    [
        ("4.17.0", "4.16.0", LinkUpVersionRejected),  # a real refusal: the minimum is higher
        ("4.16.1", "4.16.0", LinkUpVersionRejected),
        ("5.0.0", "4.16.0", LinkUpVersionRejected),
        ("4.16.0", "4.16.0", LinkUpVersionContradicted),  # the version sent already meets it
        ("4.16", "4.16.0", LinkUpVersionContradicted),
        ("4.12.0", "4.16.0", LinkUpVersionContradicted),
        (None, "4.16.0", LinkUpVersionContradicted),  # no minimum named
        ("", "4.16.0", LinkUpVersionContradicted),
        ("soon", "4.16.0", LinkUpVersionContradicted),
    ],
)
def test_920_is_a_refusal_only_when_it_names_a_higher_minimum(
    minimum: str | None, sent: str, expected: type[LinkUpError]
) -> None:
    data = {} if minimum is None else {"minimumVersion": minimum}
    with pytest.raises(expected) as exc:
        classify(403, "application/json", body({"status": 920, "data": data}), version=sent)
    if expected is LinkUpVersionContradicted:
        assert exc.value.reason == "server_error" and not exc.value.needs_person
        assert "tries again by itself" in exc.value.message
    else:
        assert exc.value.needs_person


def test_version_key_compares_numerically() -> None:
    assert version_key("4.9.0") < version_key("4.16.0") < version_key("4.17") < version_key("5.0.0")  # type: ignore[operator]
    assert version_key("4.16") == version_key("4.16.0")
    assert version_key("auto") is None and version_key(None) is None and version_key("4.x") is None
