"""The simulators answer like a broken sensor feed or a hostile Nightscout (issue 21), on request only.

LibreLink Up: readings dated in the future and values no sensor gives (1000, 12, NaN, 152.5, "152").
Nightscout: read-backs whose entries carry NaN, Infinity or text as their date. Over real HTTP on
127.0.0.1, never through the bridge's clients.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import LinkUpSimulator, SimPatient, parse_llu_timestamp
from tools.simulators.nightscout import NightscoutStandIn

from tests.simulators.test_librelinkup_simulator import graph, token_of
from tests.support.librelinkup import EMAIL, PATIENT, USER_ID
from tests.support.nightscout import SECRET

NOW = 1764190882.0
YEAR = 365 * 24 * 3600


@pytest.fixture
def sim() -> Iterator[LinkUpSimulator]:
    with LinkUpSimulator(VirtualClock(NOW), seed=7) as s:
        yield s


@pytest.fixture
def pat(sim: LinkUpSimulator) -> SimPatient:
    sim.add_account(EMAIL, "correct horse", user_id=USER_ID)
    return sim.add_patient(EMAIL, patient_id=PATIENT, start=int(NOW) - 13 * 3600)


def reply(sim: LinkUpSimulator) -> dict[str, Any]:
    r = graph(sim, token_of(sim, password="correct horse"), PATIENT)
    assert r.status == 200
    data: dict[str, Any] = json.loads(r.raw)["data"]
    return data


def current_instant(data: dict[str, Any]) -> int:
    return parse_llu_timestamp(data["connection"]["glucoseMeasurement"]["FactoryTimestamp"])


def test_a_current_reading_a_year_ahead_once_then_real_ones(sim: LinkUpSimulator, pat: SimPatient) -> None:
    real = reply(sim)
    sim.future_readings(YEAR, PATIENT)
    ahead = reply(sim)
    later = reply(sim)
    assert current_instant(ahead) == current_instant(real) + YEAR
    assert parse_llu_timestamp(ahead["connection"]["glucoseItem"]["FactoryTimestamp"]) == current_instant(real) + YEAR
    # the phone's offset from UTC is kept: Timestamp moved by the same year
    shown = ahead["connection"]["glucoseMeasurement"]["Timestamp"]
    assert parse_llu_timestamp(shown) - current_instant(ahead) == parse_llu_timestamp(
        real["connection"]["glucoseMeasurement"]["Timestamp"]
    ) - current_instant(real)
    assert ahead["graphData"] == real["graphData"]  # only the current reading moved
    assert current_instant(later) == current_instant(real)  # one reply only
    # ground truth: the tampered reply offered no real current reading, the others did
    assert [s.current_epoch_s for s in sim.served] == [current_instant(real), None, current_instant(real)]


def test_a_whole_history_can_be_dated_off(sim: LinkUpSimulator, pat: SimPatient) -> None:
    real = reply(sim)
    sim.future_readings(-2 * 24 * 3600, PATIENT, where="history", replies=None)
    for _ in range(2):
        old = reply(sim)
        assert [parse_llu_timestamp(i["FactoryTimestamp"]) + 2 * 24 * 3600 for i in old["graphData"]] == [
            parse_llu_timestamp(i["FactoryTimestamp"]) for i in real["graphData"]
        ]
        assert current_instant(old) == current_instant(real)
    assert sim.served[-1].history_epoch_s == () and sim.served[0].history_epoch_s
    sim.clear_faults()
    assert reply(sim)["graphData"] == real["graphData"]


@pytest.mark.parametrize("value", [1000, 12, float("nan"), float("inf"), 152.5, "152", None])
def test_absurd_values_are_served_raw(sim: LinkUpSimulator, pat: SimPatient, value: Any) -> None:
    sim.absurd_readings(value, PATIENT, where="all")
    r = graph(sim, token_of(sim, password="correct horse"), PATIENT)
    text = r.raw.decode()
    data = json.loads(text)["data"]  # Python's parser reads NaN and Infinity back
    served = [data["connection"]["glucoseMeasurement"], *data["graphData"]]
    for item in served:
        got = item["ValueInMgPerDl"]
        assert (isinstance(value, float) and math.isnan(value) and math.isnan(got)) or got == value
        assert item["Value"] == got or got != got
    if isinstance(value, float) and math.isnan(value):
        assert '"ValueInMgPerDl":NaN' in text  # the bare token, as a broken server would send it
    assert sim.served[-1].current_epoch_s is None and sim.served[-1].history_epoch_s == ()
    assert reply(sim)["connection"]["glucoseMeasurement"]["ValueInMgPerDl"] != value  # one reply only


# --- Nightscout ---------------------------------------------------------------------------------------------


@pytest.fixture
def ns() -> Iterator[NightscoutStandIn]:
    with NightscoutStandIn(VirtualClock(NOW), api_secret=SECRET) as stand_in:
        stand_in.add_entry({"type": "sgv", "sgv": 110, "date": int(NOW * 1000) - 60_000, "device": "other"})
        yield stand_in


def read_v1(ns: NightscoutStandIn) -> str:
    http = urllib3.PoolManager()
    r = http.request(
        "GET", ns.base_url + "/api/v1/entries/sgv.json?count=10", headers={"api-secret": ns.api_secret_sha1}
    )
    assert r.status == 200
    return str(r.data.decode())


def test_nightscout_read_back_with_nan_infinity_and_text_dates(ns: NightscoutStandIn) -> None:
    ns.hostile_read_back([float("nan"), float("inf"), "soon"])
    text = read_v1(ns)
    assert '"date":NaN' in text and '"date":Infinity' in text and '"date":"soon"' in text
    dates = [d["date"] for d in json.loads(text)]
    assert len(dates) == 4 and dates[3] == int(NOW * 1000) - 60_000  # the real entry is still there
    assert json.loads(read_v1(ns))[0]["date"] == int(NOW * 1000) - 60_000  # once only
    ns.hostile_read_back([None], count=5)
    ns.clear_faults()
    assert len(json.loads(read_v1(ns))) == 1


def test_nightscout_v3_search_with_a_nan_date(ns: NightscoutStandIn) -> None:
    token = ns.add_subject("reader", ["readable"])
    http = urllib3.PoolManager()
    jwt = json.loads(http.request("GET", ns.base_url + "/api/v2/authorization/request/" + token).data)["token"]
    ns.hostile_read_back([float("nan")])
    r = http.request(
        "GET", ns.base_url + "/api/v3/entries?type$eq=sgv&fields=date", headers={"Authorization": f"Bearer {jwt}"}
    )
    assert r.status == 200
    assert r.data.decode().startswith('{"status":200,"result":[{"type":"sgv","sgv":120,"date":NaN')
