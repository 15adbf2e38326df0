"""The "Sensor Start" treatment through API v1 and v3 (against the Nightscout stand-in on loopback)."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn, v3_identifier

from linkup_sync.errors import NightscoutRejected, NightscoutUnauthorized, NightscoutUnreachable
from linkup_sync.nightscout import NightscoutV1, NightscoutV3
from linkup_sync.nightscout.treatments import (
    SENSOR_START,
    sensor_notes,
    sensor_start_identifier,
    sensor_start_v1,
    sensor_start_v3,
)
from tests.support import nightscout
from tests.support.nightscout import SECRET

ACTIVATED = 1_795_000_000  # Unix seconds, 2026-11-18T11:06:40Z
ACTIVATED_ISO = "2026-11-18T11:06:40.000Z"
SERIAL = "3MH00A1B2C3"
POOL = urllib3.PoolManager(maxsize=4, retries=False)


clock = nightscout.clock
ns = nightscout.ns


def v1(ns: NightscoutStandIn, token: str = SECRET, **kw: Any) -> NightscoutV1:
    return NightscoutV1(base_url=ns.base_url, token=token, pool=POOL, **kw)


def v3(ns: NightscoutStandIn, token: str, clock: VirtualClock, **kw: Any) -> NightscoutV3:
    return NightscoutV3(base_url=ns.base_url, token=token, pool=POOL, clock=clock, **kw)


def sensor_starts(ns: NightscoutStandIn) -> list[dict[str, Any]]:
    return [t for t in ns.treatments if t.get("eventType") == SENSOR_START]


# --- documents ---------------------------------------------------------------------------------------------


def test_documents() -> None:
    assert sensor_start_v1(serial=SERIAL, activated_at=ACTIVATED, device="dev") == {
        "eventType": "Sensor Start",
        "created_at": ACTIVATED_ISO,
        "enteredBy": "dev",
        "notes": f"FreeStyle Libre sensor {SERIAL}",
    }
    doc = sensor_start_v3(serial=SERIAL, activated_at=ACTIVATED, device="dev", app="app")
    assert doc == {
        "identifier": v3_identifier("dev", ACTIVATED * 1000, "Sensor Start"),
        "date": ACTIVATED * 1000,
        "utcOffset": 0,
        "app": "app",
        "device": "dev",
        "eventType": "Sensor Start",
        "created_at": ACTIVATED_ISO,
        "enteredBy": "dev",
        "notes": f"FreeStyle Libre sensor {SERIAL}",
    }
    assert sensor_start_identifier("dev", ACTIVATED * 1000) == doc["identifier"]


def test_notes_keep_only_the_serial() -> None:
    assert sensor_notes("<b>3MH0 0A1</b>\n") == "FreeStyle Libre sensor b3MH00A1b"
    assert sensor_notes("") == "FreeStyle Libre sensor"
    assert len(sensor_notes("X" * 500)) == len("FreeStyle Libre sensor ") + 32


@pytest.mark.parametrize("bad", [ACTIVATED * 1000, 0, -5, True, 1.5e9])
def test_activation_time_must_be_unix_seconds(bad: Any) -> None:
    c = NightscoutV1(base_url="https://ns.example.org", token=SECRET, pool=POOL)
    with pytest.raises(ValueError, match="Unix seconds"):
        c.post_sensor_start(serial=SERIAL, activated_at=bad)


# --- API v1 ----------------------------------------------------------------------------------------------


def test_v1_sensor_start_once_across_repeated_posts(ns: NightscoutStandIn) -> None:
    c = v1(ns, device="linkup-sync")
    for _ in range(3):
        c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    v1(ns).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)  # another instance / run
    [doc] = sensor_starts(ns)
    assert doc["created_at"] == ACTIVATED_ISO and doc["utcOffset"] == 0
    assert (doc["enteredBy"], doc["notes"]) == ("linkup-sync", f"FreeStyle Libre sensor {SERIAL}")
    req = next(r for r in ns.requests if r.method == "POST")
    assert req.path == "/api/v1/treatments.json" and req.status == 200
    assert req.headers["api-secret"] == ns.api_secret_sha1 and req.headers["accept"] == "application/json"
    assert isinstance(req.body, list) and len(req.body) == 1
    assert SECRET.encode() not in req.raw_body
    # a new sensor is a second document
    c.post_sensor_start(serial="3MH00ZZZZZZ", activated_at=ACTIVATED + 14 * 86400)
    assert len(sensor_starts(ns)) == 2


def test_v1_token_with_treatment_permissions(ns: NightscoutStandIn) -> None:
    ns.add_role("bridge-t", ["api:entries:create", "api:entries:read", "api:treatments:create", "api:treatments:read"])
    token = ns.add_subject("bridge-t", ["bridge-t"])
    v1(ns, token).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    v1(ns, token).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    assert len(sensor_starts(ns)) == 1


def test_v1_token_without_treatment_permissions_is_explained(ns: NightscoutStandIn) -> None:
    token = ns.uploader_token()  # entries only
    with pytest.raises(NightscoutUnauthorized) as exc:
        v1(ns, token).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    msg = str(exc.value)
    assert "api:treatments:create" in msg and "api:treatments:read" in msg and "Sensor Start" in msg
    assert token not in msg
    assert ns.treatments == []


def test_v1_errors_name_the_treatment(ns: NightscoutStandIn) -> None:
    ns.fail_next(1, status=400, body="bad", path="/api/v1/treatments")
    with pytest.raises(NightscoutRejected, match="did not accept the Sensor Start treatment: HTTP 400"):
        v1(ns).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    ns.fail_next(1, status=503, body="down", path="/api/v1/treatments")
    with pytest.raises(NightscoutUnreachable, match="HTTP 503"):
        v1(ns).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)


# --- API v3 ----------------------------------------------------------------------------------------------


def test_v3_sensor_start_once_across_repeated_posts(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    token = ns.admin_token()
    c = v3(ns, token, clock, device="linkup-sync", app="linkup-sync")
    c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    v3(ns, token, clock).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    [doc] = sensor_starts(ns)
    # our identifier is the one the server computes from device, date and eventType (docs/nightscout-api.md §5.4)
    assert doc["identifier"] == v3_identifier("linkup-sync", ACTIVATED * 1000, "Sensor Start")
    assert (doc["date"], doc["created_at"], doc["utcOffset"]) == (ACTIVATED * 1000, ACTIVATED_ISO, 0)
    assert (doc["app"], doc["device"], doc["enteredBy"]) == ("linkup-sync", "linkup-sync", "linkup-sync")
    statuses = [r.status for r in ns.requests if r.path == "/api/v3/treatments"]
    assert statuses == [201, 200, 200]
    assert ns.count("/api/v2/authorization/request/") == 2  # one per client instance (no cache given)


def test_v3_without_update_permission_a_repeat_is_still_success(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    ns.add_role("t-create", ["api:treatments:create"])
    c = v3(ns, ns.add_subject("t-create", ["t-create"]), clock)
    c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)  # 403 update: the document exists
    assert [r.status for r in ns.requests if r.path == "/api/v3/treatments"] == [201, 403]
    assert len(sensor_starts(ns)) == 1


def test_v3_after_a_v1_sensor_start_counts_as_there(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    v1(ns).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    v3(ns, ns.admin_token(), clock).post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    [status] = [r.status for r in ns.requests if r.path == "/api/v3/treatments"]
    assert status == 400  # matched the v1 document (created_at + eventType): "Field app cannot be modified"
    assert len(sensor_starts(ns)) == 1


def test_v3_without_create_permission_is_explained(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = v3(ns, ns.uploader_token(), clock)
    with pytest.raises(NightscoutRejected) as exc:
        c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    msg = str(exc.value)
    assert "Sensor Start treatment" in msg and "api:treatments:create" in msg and "HTTP 403" in msg
    assert ns.treatments == []


def test_v3_new_jwt_on_401(ns: NightscoutStandIn, clock: VirtualClock) -> None:
    c = v3(ns, ns.admin_token(), clock)
    c.post_sensor_start(serial=SERIAL, activated_at=ACTIVATED)
    ns.rotate_jwt_key()
    c.post_sensor_start(serial="3MH00ZZZZZZ", activated_at=ACTIVATED + 14 * 86400)
    assert ns.count("/api/v2/authorization/request/") == 2
    assert len(sensor_starts(ns)) == 2
