"""Issue 21 end to end: readings no sensor gives never reach Nightscout, and never stop the bridge.

The real handler (and the command line) against the LibreLink Up simulator answering like a broken
sensor feed, the Nightscout stand-in (API v1 and v3) and moto's DynamoDB. "The old version" is this code
with the plausibility screen and the healing switched off: exactly what the bridge did before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from tools.simulators.librelinkup import SimPatient

import linkup_sync.upload as upload_module
from linkup_sync.plausibility import FUTURE_S, SGV_MAX, SGV_MIN, Screened
from linkup_sync.state.model import TargetState
from tests.integration.checks import assert_clean_series
from tests.integration.conftest import LogCapture
from tests.integration.harness import EMAIL, Harness
from tests.integration.test_cli import Sim, healthy, sim  # noqa: F401 - the fixture
from tests.integration.test_targets_v3_sensors import jwt_requests, v3_token

YEAR = 365 * 24 * 3600


def provision(harness: Harness, api: str) -> SimPatient:
    patient = harness.llu.add_patient(EMAIL)
    if api == "v3":
        harness.provision(ns_token=v3_token(harness.ns), NIGHTSCOUT_API_V3="true")
    else:
        harness.provision()
    return patient


def current_instants(harness: Harness) -> list[int]:
    return [s.current_epoch_s for s in harness.llu.served if s.current_epoch_s is not None]


def assert_plausible_store(harness: Harness, *, sent_before: int = 0) -> None:
    """Nothing future or absurd in Nightscout (but the `sent_before` future entries an old version sent)."""
    now = int(harness.clock())
    entries = harness.ns.sgv_entries()
    ahead = [e for e in entries if int(e["date"]) // 1000 > now + FUTURE_S]
    assert len(ahead) == sent_before, "a future reading reached Nightscout"
    assert all(isinstance(e["sgv"], int) and SGV_MIN <= e["sgv"] <= SGV_MAX for e in entries)
    assert max(harness.stored_ledger()) <= now + FUTURE_S


def old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge before issue 21: every parsed reading taken as it came, the stored ledger trusted."""
    monkeypatch.setattr(upload_module, "screen", lambda graph, now: Screened(graph, 0))
    monkeypatch.setattr(upload_module, "heal", lambda stored, now: stored)


def target_item(harness: Harness) -> dict[str, Any]:
    [item] = [i for i in harness.state_items() if i["sk"]["S"].startswith("target#")]
    return item


# --- the finding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_a_reading_a_year_ahead_then_13_real_ones_all_arrive(harness: Harness, logs: LogCapture, api: str) -> None:
    provision(harness, api)
    harness.llu.future_readings(YEAR)  # the next graph reply only
    first = harness.run()
    assert first["implausible"] == 1 and first["uploaded"] > 100  # the 12 h history still arrives
    assert first["newest_reading_age_s"] < 20 * 60  # the newest plausible reading: the history's last point
    assert_plausible_store(harness)
    text = logs.text()
    assert '"reason":"implausible"' in text.replace(" ", "")
    summary = [json.loads(ln) for ln in text.splitlines() if '"sync run finished"' in ln][-1]["summary"]
    assert summary["implausible"] == 1  # the summary log line carries it too

    before = len(current_instants(harness))
    for _ in range(13):
        harness.tick(60)
        report = harness.run()
        assert report["uploaded"] >= 1 and report["implausible"] == 0 and report["newest_reading_age_s"] < 120
    real = current_instants(harness)[before:]
    assert len(real) == 13
    stored = {int(e["date"]) // 1000 for e in harness.ns.sgv_entries()}
    assert set(real) <= stored  # all 13 arrived: no silent stop
    assert_clean_series(harness.llu, harness.ns)
    assert_plausible_store(harness)


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_values_no_sensor_gives_are_never_sent(harness: Harness, api: str) -> None:
    patient = provision(harness, api)
    harness.run()
    absurd: list[Any] = [1000, 12, math.nan, 152.5, "152", 39, 501]
    dropped = []
    for value in absurd:
        harness.tick(60)
        harness.llu.absurd_readings(value)
        sample = patient.current_sample(harness.clock())
        assert sample is not None
        dropped.append(sample[0])
        report = harness.run()
        # only the current reading was absurd: a history point may still fill the minute it left
        assert report["implausible"] == 1 and report["uploaded"] == report["gap_filled"], value
    assert not set(dropped) & {int(e["date"]) // 1000 for e in harness.ns.sgv_entries()}
    harness.tick(60)
    harness.llu.absurd_readings(1000, where="all")  # the history too: every item of the reply
    report = harness.run()
    assert report["implausible"] > 100 and report["uploaded"] == 0
    harness.tick(60)
    assert harness.run()["uploaded"] >= 1  # the next real reading arrives
    assert_plausible_store(harness)
    assert_clean_series(harness.llu, harness.ns)


def test_lo_and_hi_stay_valid(harness: Harness) -> None:
    provision(harness, "v1")
    for value in (SGV_MIN, SGV_MAX):
        harness.tick(60)
        harness.llu.absurd_readings(value)
        report = harness.run()
        assert report["implausible"] == 0 and report["uploaded"] >= 1
    assert [e["sgv"] for e in harness.ns.sgv_entries()[-2:]] == [SGV_MIN, SGV_MAX]


# --- a state an earlier version wrote ------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v3"])
def test_the_old_versions_future_cut_off_heals_on_the_next_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    patient = provision(harness, api)
    with monkeypatch.context() as patched:
        old_version(patched)
        harness.llu.future_readings(YEAR)
        harness.run()
        assert max(harness.stored_ledger()) > harness.clock() + YEAR - 3600  # the old version stored it
        written = target_item(harness)["updated_at"]["N"]
        harness.tick(9 * 3600)  # past the v3 JWT's 8 hours
        stuck = harness.run()
        assert stuck["uploaded"] == 0  # the finding: the cut-off a year ahead hides every real reading
        assert target_item(harness)["updated_at"]["N"] == written  # and nothing asks Nightscout anything
        # Why the stop outlived the item's 30-day expiry: any other write to the target item renews that
        # expiry along with the future ledger. With v3 such a write carries a renewed JWT (here the Sensor
        # Start of a new sensor is the request that needs one).
        patient.sensor_serial, patient.sensor_activated = "0ENEWSENSOR", int(harness.clock()) - 3600
        harness.tick(60)
        assert harness.run()["uploaded"] == 0
        item = target_item(harness)
        assert item["updated_at"]["N"] != written
        assert int(item["expires_at"]["N"]) > harness.clock() + 29 * 24 * 3600
        assert max(harness.stored_ledger()) > harness.clock() + YEAR - 10 * 3600  # renewed with it
        if api == "v3":
            assert jwt_requests(harness.ns) == 2 and harness.stored_account().targets  # a new JWT, stored

    harness.tick(60)
    healed_at = int(harness.clock())
    healed = harness.run()  # this version, on the state the old one left
    assert healed["uploaded"] > 100  # the current reading and the history since the stop
    # The entry the old version sent stays in Nightscout (the bridge may not delete entries); the ledger
    # and everything sent from now on are plausible.
    assert_plausible_store(harness, sent_before=1)
    stored = sorted(int(e["date"]) // 1000 for e in harness.ns.sgv_entries())
    history = harness.llu.served[-1].history_epoch_s
    assert history and all(any(abs(t - u) <= 150 for u in stored) for t in history)  # the 12 h are whole again
    assert_clean_series(harness.llu, harness.ns, since=healed_at)
    state: TargetState = next(iter(harness.stored_account().targets.values()))
    assert state.checked_until is not None and state.checked_until <= harness.clock()
    harness.tick(60)
    assert harness.run()["uploaded"] >= 1


# --- the command line ------------------------------------------------------------------------------------------


def test_the_command_line_says_how_many_were_dropped(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    healthy(sim)
    sim.llu.future_readings(YEAR)
    code, out, err = sim.run(capsys, "sync", "--once")
    assert code == 0 and "; 1 implausible reading dropped" in out
    assert "dated outside the plausible window" in err  # the warning, said once
    sim.clock.advance(60)
    sim.llu.absurd_readings(math.nan)
    code, out, _ = sim.run(capsys, "sync", "--once", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["implausible"] == 1 and summary["uploaded"] == 0
    sim.clock.advance(60)
    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and "implausible" not in out and out.startswith("uploaded 1 reading")


# --- a hostile Nightscout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v3"])
@pytest.mark.parametrize("date", [math.nan, math.inf, "soon"])
def test_a_read_back_with_nan_dates_is_a_nightscout_error_not_a_crash(
    harness: Harness, logs: LogCapture, api: str, date: Any
) -> None:
    """Before: ValueError/OverflowError, the run failed as "internal". Now: the read-back's fallback."""
    provision(harness, api)
    harness.ns.hostile_read_back([date])
    first = harness.run()  # no exception: the run went on
    assert first["uploaded"] == 1 and first["gap_filled"] == 0  # only the current reading, as for any failed read
    assert '"reason":"gap_fill_deferred"' in logs.text().replace(" ", "")
    harness.tick(60)
    second = harness.run()
    assert second["gap_filled"] > 100  # the next run reads again and fills the 12 hours
    # (the oldest point of the first reply left LibreLink Up's 12-hour window in between)
    assert_clean_series(harness.llu, harness.ns, since=int(harness.clock()) - 12 * 3600)


def test_doctor_names_readings_that_are_all_implausible(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    healthy(sim)
    sim.llu.future_readings(YEAR, where="all")
    code, out, _ = sim.run(capsys, "doctor")
    assert code != 0
    assert "none is plausible" in out and "Check the date and time of the wearer's phone" in out
    assert sim.ns.sgv_entries() == []
