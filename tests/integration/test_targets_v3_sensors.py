"""Issue 4 end to end: Nightscout API v3, several patients in one stack, and Sensor Start treatments."""

from __future__ import annotations

import json

import boto3
import pytest
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync import errors
from tests.integration.checks import assert_clean_series
from tests.integration.harness import EMAIL, PASSWORD, Harness


def v3_token(ns: NightscoutStandIn, name: str = "bridge-v3", *, update: bool = True) -> str:
    permissions = ["api:entries:create", "api:entries:read", "api:treatments:create", "api:treatments:read"]
    if update:
        permissions += ["api:entries:update", "api:treatments:update"]
    ns.add_role(f"{name}-role", permissions)
    return ns.add_subject(name, [f"{name}-role"])


def jwt_requests(ns: NightscoutStandIn) -> int:
    return ns.count("/api/v2/authorization/request/")


def forget_uploads(harness: Harness) -> None:
    """Drop every target's upload ledger from the stored state, so every reading is sent again."""
    table = harness.env["STATE_TABLE_NAME"]
    ddb = boto3.client("dynamodb", endpoint_url=harness.moto_endpoint)
    for item in ddb.scan(TableName=table)["Items"]:
        if item["sk"]["S"].startswith("target#"):
            ddb.update_item(
                TableName=table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="REMOVE uploaded, #r",
                ExpressionAttributeNames={"#r": "rev"},
            )


def test_v3_six_hours_clean_series_and_one_jwt_per_8_hours(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token=v3_token(harness.ns), NIGHTSCOUT_API_V3="true")
    for i in range(72):
        if i % 18 == 17:
            harness.new_container()  # cold starts in between: the JWT comes from the stored state
        harness.run()
        harness.tick(300)
    assert harness.llu.logins == 1
    assert jwt_requests(harness.ns) == 1  # 6 hours < 8 hours: one exchange, across cold starts
    assert_clean_series(harness.llu, harness.ns)
    docs = harness.ns.sgv_entries()
    assert all(d.get("identifier") and d["app"] == "linkup-sync" and d["device"] == "linkup-sync" for d in docs)
    assert all(d["dateString"].endswith("Z") for d in docs)  # v1 readers still work
    # past 8 hours a new JWT is fetched once
    harness.tick(3 * 3600)
    harness.run()
    assert jwt_requests(harness.ns) == 2


def test_v3_reupload_is_deduplicated_not_duplicated(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token=v3_token(harness.ns), NIGHTSCOUT_API_V3="true")
    harness.run()
    count = len(harness.ns.sgv_entries())
    # lose the ledger (as after a crash between upload and state write): everything is sent again
    forget_uploads(harness)
    harness.run()
    assert len(harness.ns.sgv_entries()) == count
    assert harness.ns.duplicates() == []


def test_v3_token_without_update_permission_explains_the_role(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token=v3_token(harness.ns, update=False), NIGHTSCOUT_API_V3="true")
    harness.run()
    forget_uploads(harness)
    with pytest.raises(errors.NightscoutRejected) as err:
        harness.run()
    assert "api:entries:update" in str(err.value)


def test_api_secret_is_refused_for_v3_with_a_clear_message(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token="test-secret-123456", NIGHTSCOUT_API_V3="true")
    with pytest.raises(errors.ConfigError) as err:
        harness.run()
    assert "access token" in str(err.value) and "test-secret-123456" not in str(err.value)
    assert harness.llu.requests == []  # said at start-up, before LibreLink Up is asked for anything


def test_two_patients_to_two_sites_each_get_their_own_readings(harness: Harness) -> None:
    first = harness.llu.add_patient(EMAIL, first_name="Ann", seed=1)
    second = harness.llu.add_patient(EMAIL, first_name="Ben", seed=2, units="mmol")
    other_ns = NightscoutStandIn(harness.clock).start()
    try:
        harness.provision()
        harness.secret_targets(
            [
                {
                    "LINK_UP_CONNECTION": first.id,
                    "NIGHTSCOUT_URL": harness.ns.base_url,
                    "NIGHTSCOUT_API_TOKEN": harness.ns_token,
                },
                {
                    "LINK_UP_CONNECTION": second.id,
                    "NIGHTSCOUT_URL": other_ns.base_url,
                    "NIGHTSCOUT_API_TOKEN": v3_token(other_ns),
                    "NIGHTSCOUT_API_V3": True,
                },
            ]
        )
        for _ in range(12):
            result = harness.run()
            assert result["linkup_requests"] == 2 or result["logins"] == 1  # one graph per patient
            harness.tick(300)
        assert harness.llu.logins == 1
        assert harness.llu.count("/llu/connections") == harness.llu.count("/llu/connections/")  # no discovery
        mine = {int(e["date"]) // 1000 for e in harness.ns.sgv_entries()}
        theirs = {int(e["date"]) // 1000 for e in other_ns.sgv_entries()}
        first_samples = {t for t, _, _ in first.samples_between(min(mine), max(mine))}
        second_samples = {t for t, _, _ in second.samples_between(min(theirs), max(theirs))}
        assert mine <= first_samples and theirs <= second_samples
        assert harness.ns.duplicates() == [] and other_ns.duplicates() == []
        # one failing Nightscout does not stop the other, and its state does not advance
        other_ns.set_unreachable(True)
        before = len(harness.ns.sgv_entries())
        with pytest.raises(errors.NightscoutUnreachable):
            harness.run()
        assert len(harness.ns.sgv_entries()) > before
        other_ns.set_unreachable(False)
        harness.tick(300)
        result = harness.run()
        assert result["targets"][1]["uploaded"] >= 1
        assert other_ns.duplicates() == []
    finally:
        other_ns.stop()


def test_sensor_change_posts_exactly_one_sensor_start(harness: Harness) -> None:
    token = v3_token(harness.ns, "bridge-treat")
    first_activation = int(harness.clock()) - 86400
    patient = harness.llu.add_patient(EMAIL, sensor_serial="0AAAAAAAA1", sensor_activated=first_activation)
    harness.provision(ns_token=token)
    for _ in range(5):
        harness.run()
        harness.tick(300)
    starts = [t for t in harness.ns.treatments if t["eventType"] == "Sensor Start"]
    assert len(starts) == 1
    # a new sensor
    patient.sensor_serial = "0BBBBBBBB2"
    patient.sensor_activated = int(harness.clock()) - 60
    for i in range(5):
        if i == 2:
            harness.new_container()
        harness.run()
        harness.tick(300)
    starts = [t for t in harness.ns.treatments if t["eventType"] == "Sensor Start"]
    assert len(starts) == 2
    assert {s["created_at"][:19] for s in starts} == {_iso(first_activation), _iso(patient.sensor_activated)}


def test_sensor_start_can_be_switched_off(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token=v3_token(harness.ns, "bridge-off"), NIGHTSCOUT_SENSOR_START="false")
    harness.run()
    assert harness.ns.treatments == []


def _iso(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_flat_secret_and_list_secret_are_both_valid(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    sm = boto3.client("secretsmanager", endpoint_url=harness.moto_endpoint)
    flat = json.loads(sm.get_secret_value(SecretId=harness.secret_arn)["SecretString"])
    assert set(flat) == {"LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN"}
    assert harness.run()["uploaded"] > 0
    assert PASSWORD  # the flat form is nightscout-librelink-up's names, unchanged


def test_a_new_sensor_start_never_snoozes_nightscout_alarms(harness: Harness) -> None:
    """Issue #15: a treatment younger than 10 minutes that is not an announcement snoozes urgent alarms
    (docs/nightscout-api.md §11), so the Sensor Start waits until its time is at least 10 minutes in the past."""
    token = v3_token(harness.ns, "bridge-snooze")
    patient = harness.llu.add_patient(EMAIL, sensor_serial="0AAAAAAAA1", sensor_activated=int(harness.clock()) - 86400)
    harness.provision(ns_token=token)
    harness.run()
    harness.tick(900)  # the first sensor's start is long past: posted, and it snoozes nothing
    patient.sensor_serial = "0CCCCCCCC3"
    patient.sensor_activated = int(harness.clock()) - 30  # LibreLink Up shows the new sensor at once
    posted_at = None
    for _ in range(6):
        harness.run()
        assert not harness.ns.urgent_alarms_snoozed(), "a Sensor Start would have silenced urgent alarms"
        starts = [t for t in harness.ns.treatments if t["eventType"] == "Sensor Start"]
        if len(starts) == 2 and posted_at is None:
            posted_at = harness.clock()
        harness.tick(120)
    assert posted_at is not None  # it is posted, once it is 10 minutes old
    assert posted_at - patient.sensor_activated >= 600
    assert len([t for t in harness.ns.treatments if t["eventType"] == "Sensor Start"]) == 2
