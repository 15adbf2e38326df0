"""The Foundation's promises, end to end: the real handler, the simulators on loopback, moto for AWS."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import boto3
import pytest

from linkup_sync.errors import NightscoutUnauthorized, NightscoutUnreachable
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import account_key
from tests.integration.checks import assert_clean_series, ns_instants, offered
from tests.integration.conftest import LogCapture
from tests.integration.harness import EMAIL, PASSWORD, Harness


def stored_ledger(h: Harness) -> tuple[int, ...]:
    store = DynamoDBStateStore(h.env["STATE_TABLE_NAME"], client=boto3.client("dynamodb", endpoint_url=h.moto_endpoint))
    targets = store.load(account_key(EMAIL)).targets
    return next(iter(targets.values())).uploaded if targets else ()


def test_six_hours_of_scheduled_runs_give_a_clean_series_with_one_login(harness: Harness) -> None:
    harness.add_patient = harness.llu.add_patient(EMAIL)  # type: ignore[attr-defined]
    harness.provision()
    results = []
    for _ in range(72):
        results.append(harness.run())
        harness.tick(300)
    assert harness.llu.logins == 1
    assert_clean_series(harness.llu, harness.ns)
    assert sum(r["uploaded"] for r in results) == len(ns_instants(harness.ns))
    assert results[0]["gap_filled"] > 100  # the first run fills the 12-hour window
    assert all(r["linkup_requests"] == 1 for r in results[1:])
    assert all(r["nightscout_requests"] <= 1 for r in results[1:])  # the first run also posts the Sensor Start
    current, _history = offered(harness.llu)
    assert len(current) == 72


def test_cold_start_neither_logs_in_nor_duplicates(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    for _ in range(3):
        harness.run()
        harness.tick(300)
    logins = harness.llu.logins
    before = len(ns_instants(harness.ns))
    result = harness.cold_run()
    assert result["logins"] == 0 and result["linkup_requests"] == 1
    assert result["uploaded"] >= 1 and len(ns_instants(harness.ns)) == before + result["uploaded"]
    assert harness.llu.logins == logins
    harness.tick(300)
    harness.new_container()
    harness.run()
    assert harness.llu.logins == logins
    assert_clean_series(harness.llu, harness.ns)


def test_nightscout_outage_holds_state_and_backfills_every_reading_once(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    for _ in range(6):
        harness.run()
        harness.tick(300)
    before = stored_ledger(harness)
    outage_start = int(harness.clock())
    harness.ns.set_unreachable(True)
    for _ in range(24):  # two simulated hours
        with pytest.raises(NightscoutUnreachable):
            harness.run()
        assert stored_ledger(harness) == before
        harness.tick(300)
    outage_end = int(harness.clock())
    harness.ns.set_unreachable(False)
    for _ in range(6):
        harness.run()
        harness.tick(300)
    assert harness.llu.logins == 1
    stored = ns_instants(harness.ns)
    assert harness.ns.duplicates() == []
    # every per-minute sample of the outage that LibreLink Up still had in its 5-minute history arrived
    _current, history = offered(harness.llu)
    during = sorted(t for t in history if outage_start <= t < outage_end)
    assert len(during) >= 20
    assert set(during) <= set(stored)
    # current readings offered while Nightscout was down are replaced by the history points near them
    assert_clean_series_outside(harness, outage_start, outage_end)


def assert_clean_series_outside(h: Harness, start: int, end: int) -> None:
    """Current readings of polls that reached Nightscout are there exactly; the others are covered by history."""
    stored = set(ns_instants(h.ns))
    for served in h.llu.served:
        t = served.current_epoch_s
        if t is None:
            continue
        if start <= served.time < end:
            assert any(abs(t - u) <= 150 for u in stored), f"outage reading {t} not covered"
        else:
            assert t in stored, f"current reading {t} missing"
    _current, history = offered(h.llu)
    for t in history:
        assert any(abs(t - u) <= 150 for u in stored), t


def test_region_redirect_is_followed_and_remembered(harness: Harness) -> None:
    harness.llu.stop()
    harness.llu = type(harness.llu)(harness.clock).start()
    harness.llu.add_account(EMAIL, PASSWORD, home_region="eu2")
    harness.llu.add_patient(EMAIL)
    harness.provision(region_setting="EU")
    first = harness.run()
    assert first["logins"] == 1 and first["uploaded"] > 0
    logins = [r for r in harness.llu.requests if r.path.endswith("/llu/auth/login")]
    assert [r.region for r in logins] == ["eu", "eu2"]
    harness.tick(300)
    second = harness.cold_run()
    assert second["logins"] == 0 and second["uploaded"] >= 1 and second["linkup_requests"] == 1
    graph_calls = [r for r in harness.llu.requests if r.path.endswith("/graph")]
    assert {r.region for r in graph_calls} == {"eu2"}
    assert harness.llu.logins == 2  # the redirect reply plus the real login: one login attempt


def test_dst_change_in_berlin_keeps_every_instant_right(harness: Harness) -> None:
    # Berlin leaves summer time on 2026-10-25 at 01:00 UTC; run from 23:00 UTC to 03:00 UTC across it
    harness.clock.set(datetime(2026, 10, 24, 23, 0, tzinfo=UTC).timestamp())
    patient = harness.llu.add_patient(EMAIL, tz="Europe/Berlin")
    harness.provision()
    for _ in range(48):
        harness.run()
        harness.tick(300)
    stored = ns_instants(harness.ns)
    samples = {t: mg for t, mg, _trend in patient.samples_between(stored[0] - 1, stored[-1] + 1)}
    assert all(t in samples for t in stored), "an entry at an instant LibreLink Up never had"
    by_instant = {int(e["date"]) // 1000: e for e in harness.ns.sgv_entries()}
    assert all(by_instant[t]["sgv"] == samples[t] for t in stored)
    for t in stored:
        assert by_instant[t]["dateString"] == datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert_clean_series(harness.llu, harness.ns)


def test_mmol_patient_is_uploaded_in_mg_per_dl(harness: Harness) -> None:
    patient = harness.llu.add_patient(EMAIL, units="mmol")
    harness.provision()
    harness.run()
    stored = harness.ns.sgv_entries()
    samples = {t: mg for t, mg, _ in patient.samples_between(0, harness.clock() + 1)}
    assert stored and all(e["sgv"] == samples[int(e["date"]) // 1000] for e in stored)
    assert any(e["sgv"] > 40 for e in stored)


@pytest.mark.parametrize("form", ["api_secret", "sha1_hex", "access_token"])
def test_all_three_token_forms_upload(harness: Harness, form: str) -> None:
    harness.llu.add_patient(EMAIL)
    token = {
        "api_secret": "test-secret-123456",
        "sha1_hex": hashlib.sha1(harness.ns_token.encode()).hexdigest(),  # noqa: S324 - Nightscout's own scheme
        "access_token": harness.ns_token,
    }[form]
    harness.provision(ns_token=token)
    result = harness.run()
    assert result["uploaded"] > 100 and len(ns_instants(harness.ns)) == result["uploaded"]


def test_wrong_token_gives_the_clear_401_message(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(ns_token="not-the-right-token")
    with pytest.raises(NightscoutUnauthorized) as err:
        harness.run()
    assert "api:entries:create" in str(err.value) and "api:entries:read" in str(err.value)
    assert ns_instants(harness.ns) == []
    assert stored_ledger(harness) == ()


def test_steady_state_run_costs_one_linkup_request_one_post_and_three_aws_calls(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.run()
    harness.tick(300)
    harness.new_container()  # a new container: nothing cached, the worst steady-state case
    harness.aws_calls.calls.clear()
    before_llu, before_ns = len(harness.llu.requests), len(harness.ns.requests)
    result = harness.run()
    assert result["uploaded"] >= 1
    assert len(harness.llu.requests) - before_llu == 1
    assert len(harness.ns.requests) - before_ns == 1
    # a new container also reads the incidents once (later only when some may be open: issue 25)
    assert harness.aws_calls.calls == ["GetSecretValue", "Query", "UpdateItem", "Query"]
    # warm: the secret comes from the cache
    harness.tick(300)
    harness.aws_calls.calls.clear()
    harness.run()
    assert harness.aws_calls.calls == ["Query", "UpdateItem"]


def test_no_secret_token_or_hash_in_any_log_line(harness: Harness, logs: LogCapture) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    for _ in range(3):
        harness.run()
        harness.tick(300)
    harness.llu.revoke_tokens()
    harness.run()  # re-login path
    harness.tick(300)
    harness.put_secret(ns_token="wrong-token-value-123")
    harness.new_container()
    with pytest.raises(NightscoutUnauthorized):
        harness.run()
    text = logs.text()
    store = DynamoDBStateStore(
        harness.env["STATE_TABLE_NAME"], client=boto3.client("dynamodb", endpoint_url=harness.moto_endpoint)
    )
    ticket = store.load(account_key(EMAIL)).account.ticket
    assert ticket is not None
    forbidden = [
        PASSWORD,
        harness.ns_token,
        hashlib.sha1(harness.ns_token.encode()).hexdigest(),  # noqa: S324
        "wrong-token-value-123",
        ticket.token,
        ticket.account_id,
        "test-secret-123456",
    ]
    for value in forbidden:
        assert value not in text
    assert "sync run finished" in text and "api:entries:create" in text  # the capture really saw the logs
