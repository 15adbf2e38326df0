"""Every LibreLink Up failure mode, through the real handler against the simulator's fault injection.

Each one must give its typed error with a message a person can act on, leave the upload state alone,
stop requests where a breaker says so (persisted, so cold starts keep it), and let the next healthy run
recover everything still in the 12-hour window. No log line may carry a secret.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable

import pytest

from linkup_sync import errors
from tests.integration.checks import assert_clean_series, ns_instants
from tests.integration.conftest import LogCapture
from tests.integration.harness import EMAIL, PASSWORD, Harness
from tests.support.librelinkup import fixture_bytes


def assert_no_secrets(h: Harness, text: str) -> None:
    account = h.stored_account().account
    forbidden = [PASSWORD, h.ns_token, hashlib.sha1(h.ns_token.encode()).hexdigest()]  # noqa: S324
    if account.ticket is not None:
        forbidden += [account.ticket.token, account.ticket.account_id]
    forbidden += [r.headers.get("authorization", "").removeprefix("Bearer ") for r in h.llu.requests]
    forbidden += [r.headers.get("account-id", "") for r in h.llu.requests]
    for value in filter(None, forbidden):
        assert value not in text, "a secret reached the logs"


def healthy_start(h: Harness, **env: str) -> None:
    h.llu.add_patient(EMAIL)
    h.provision(**env)
    h.run()
    h.tick(300)


def llu_requests_during(h: Harness, action: Callable[[], object]) -> int:
    before = len(h.llu.requests)
    action()
    return len(h.llu.requests) - before


def recover_and_check(h: Harness, *, max_runs: int = 12) -> None:
    """Runs every 5 minutes until one uploads; then every history point offered is in Nightscout."""
    for _ in range(max_runs):
        h.tick(300)
        result = h.run()
        if not result.get("skipped"):
            break
    else:
        pytest.fail("never recovered")
    assert_clean_series(h.llu, h.ns)


# --- back-off failures: rate limit, edge blocks, maintenance, server errors ------------------------------

BACKOFF_CASES: dict[str, tuple[Callable[[Harness], None], type[errors.LinkUpError], str]] = {
    "rate_limited_html": (lambda h: h.llu.rate_limit_html(1), errors.LinkUpRateLimited, "limiting requests"),
    "cloudflare_403": (lambda h: h.llu.cloudflare_block(1), errors.LinkUpBlocked, "firewall"),
    "maintenance_911": (lambda h: h.llu.set_maintenance(True), errors.LinkUpMaintenance, "maintenance"),
    "server_error_502": (lambda h: h.llu.server_error(1, status=502), errors.LinkUpServerError, "server error"),
}


@pytest.mark.parametrize("case", sorted(BACKOFF_CASES))
def test_backoff_failures_skip_linkup_then_recover(harness: Harness, logs: LogCapture, case: str) -> None:
    inject, error_type, phrase = BACKOFF_CASES[case]
    healthy_start(harness)
    ledger = harness.stored_account().targets
    inject(harness)
    with pytest.raises(error_type) as err:
        harness.run()
    assert phrase in str(err.value)
    stored = harness.stored_account()
    assert stored.targets == ledger  # nothing uploaded, nothing advanced
    assert stored.account.backoff_failures == 1 and stored.account.backoff_until > harness.clock()
    harness.llu.set_maintenance(False)
    # a run inside the back-off makes no request at all and says why
    harness.tick(30)
    harness.new_container()
    result: dict[str, object] = {}
    assert llu_requests_during(harness, lambda: result.update(harness.run())) == 0
    assert result["skipped"] == error_type.reason
    recover_and_check(harness)
    account = harness.stored_account().account
    assert account.backoff_failures == 0 and account.backoff_until is None
    assert harness.llu.logins == 1
    assert_no_secrets(harness, logs.text())


def test_backoff_grows_exponentially_and_is_capped(harness: Harness) -> None:
    healthy_start(harness)
    delays = []
    for _ in range(8):
        harness.llu.server_error(1, status=503)
        with pytest.raises(errors.LinkUpServerError):
            harness.run()
        account = harness.stored_account().account
        delays.append(account.backoff_until - int(harness.clock()))
        harness.clock.set(account.backoff_until + 1)
    assert delays[1] > delays[0] * 1.3 and delays[3] > delays[2] * 1.3
    assert max(delays) <= 30 * 60 and delays[-1] >= 30 * 60 * 0.8 * 0.99


def test_retry_after_is_honoured(harness: Harness) -> None:
    healthy_start(harness)
    harness.llu.rate_limit_html(1, retry_after=900)
    with pytest.raises(errors.LinkUpRateLimited):
        harness.run()
    assert harness.stored_account().account.backoff_until == int(harness.clock()) + 900


def test_unreachable_server_is_backed_off(harness: Harness) -> None:
    healthy_start(harness)
    harness.env["LINK_UP_API_URL"] = "http://127.0.0.1:9/{region}"  # discard port: connection refused
    harness.new_container()
    with pytest.raises(errors.LinkUpServerError) as err:
        harness.run()
    assert err.value.reason == "unreachable"
    assert harness.stored_account().account.backoff_failures == 1


def test_server_that_never_answers_ends_before_the_deadline(harness: Harness, logs: LogCapture) -> None:
    healthy_start(harness)
    harness.deadline_s = 2.0
    harness.new_container()
    harness.llu.hang(1, 30, path="/llu/connections")
    started = time.monotonic()
    with pytest.raises(errors.LinkUpTimeout):
        harness.run()
    # the 2 s budget plus overhead, far from the 30 s hang; generous for a loaded machine
    assert time.monotonic() - started < 20
    assert harness.stored_account().account.backoff_failures == 1
    assert_no_secrets(harness, logs.text())


# --- malformed responses: fail the run, change nothing ----------------------------------------------------


@pytest.mark.parametrize("inject", ["truncated", "html_200"])
def test_malformed_response_fails_without_changing_state(harness: Harness, inject: str) -> None:
    healthy_start(harness)
    before = harness.stored_account()
    if inject == "truncated":
        harness.llu.truncated_json(1)
    else:
        harness.llu.non_json(1, status=200)
    with pytest.raises(errors.LinkUpError) as err:
        harness.run()
    assert isinstance(err.value, (errors.LinkUpMalformedResponse, errors.LinkUpBlocked))
    after = harness.stored_account()
    assert after.targets == before.targets
    recover_and_check(harness)


# --- login failures ---------------------------------------------------------------------------------------


def test_bad_password_is_tried_once_per_secret_version(harness: Harness, logs: LogCapture) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(password="an old password")
    with pytest.raises(errors.LinkUpBadCredentials) as err:
        harness.run()
    assert "LINK_UP_PASSWORD" in str(err.value) and "follower" in str(err.value)
    for i in range(50):
        harness.tick(300)
        if i % 10 == 9:
            harness.new_container()  # a cold start in this process
        result = harness.run()
        assert result["skipped"] == "bad_credentials" and result["linkup_requests"] == 0
    cold = harness.cold_run()  # and a real cold start in a new process
    assert cold["skipped"] == "bad_credentials"
    assert harness.llu.logins == 1
    # a new secret version with another wrong password: exactly one new attempt
    harness.put_secret(password="still wrong")
    harness.new_container()
    with pytest.raises(errors.LinkUpBadCredentials):
        harness.run()
    for _ in range(5):
        harness.tick(300)
        assert harness.run()["skipped"] == "bad_credentials"
    assert harness.llu.logins == 2
    # the right password: logs in and uploads
    harness.put_secret(password=PASSWORD)
    harness.new_container()
    harness.tick(300)
    result = harness.run()
    assert result["logins"] == 1 and result["uploaded"] > 100
    assert harness.stored_account().account.bad_credentials_version is None
    assert_no_secrets(harness, logs.text())
    assert "an old password" not in logs.text() and "still wrong" not in logs.text()


def test_lockout_means_no_login_until_it_has_passed(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.llu.fail_next(1, status=200, body=fixture_bytes("login-locked.json"), path="/llu/auth/login")
    with pytest.raises(errors.LinkUpLocked) as err:
        harness.run()
    assert "300 seconds" in str(err.value)
    locked_at = harness.clock()
    for _ in range(5):  # every minute for 5 minutes: still within the lockout and its margin
        harness.tick(60)
        result = harness.run()
        assert result["skipped"] == "locked" and result["linkup_requests"] == 0
    assert harness.llu.logins == 1
    harness.clock.set(locked_at + 300 + 61)
    result = harness.run()
    assert result["logins"] == 1 and result["uploaded"] > 0
    assert harness.llu.logins == 2


def test_terms_step_is_explained_and_retried_hourly(harness: Harness, logs: LogCapture) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.llu.force_steps(EMAIL, ["tou"])
    with pytest.raises(errors.LinkUpActionRequired) as err:
        harness.run()
    message = str(err.value)
    assert "Terms of Use" in message and "password is fine" in message
    for _ in range(11):
        harness.tick(300)
        assert harness.run()["skipped"] == "action_required"
    assert harness.llu.logins == 1 and harness.llu.count("/auth/continue") == 0  # off by default
    harness.llu.force_steps(EMAIL, [])  # the person accepted in the app
    harness.tick(300)
    result = harness.run()
    assert result["logins"] == 1 and result["uploaded"] > 0
    assert_no_secrets(harness, logs.text())


def test_auto_accept_terms_accepts_tou_and_pp_but_never_verify_email(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision(LINK_UP_AUTO_ACCEPT_TERMS="true")
    harness.llu.force_steps(EMAIL, ["tou", "pp"])
    result = harness.run()
    assert result["uploaded"] > 0
    assert harness.llu.count("/auth/continue/tou") == 1 and harness.llu.count("/auth/continue/pp") == 1
    harness.llu.revoke_tokens()
    harness.llu.force_steps(EMAIL, ["verifyEmail"])
    harness.tick(300)
    with pytest.raises(errors.LinkUpActionRequired) as err:
        harness.run()
    assert "verify" in str(err.value)
    assert harness.llu.count("/auth/continue/verifyEmail") == 0


def test_version_rejected_is_reported_and_retried_at_once_when_changed(harness: Harness) -> None:
    healthy_start(harness, LINK_UP_VERSION="4.16.0")  # pinned: no adoption
    harness.llu.set_min_version("4.17.0")
    with pytest.raises(errors.LinkUpVersionRejected) as err:
        harness.run()
    assert "4.17.0" in str(err.value) and "LINK_UP_VERSION" in str(err.value)
    for _ in range(5):
        harness.tick(300)
        result = harness.run()
        assert result["skipped"] == "version" and result["linkup_requests"] == 0
    harness.env["LINK_UP_VERSION"] = "4.17.0"  # the person raises the version: no wait for the hourly retry
    harness.new_container()
    harness.tick(300)
    result = harness.run()
    assert result["linkup_requests"] == 1 and result["uploaded"] > 0
    assert harness.llu.logins == 1


def test_version_auto_adopts_the_minimum_once(harness: Harness) -> None:
    healthy_start(harness, LINK_UP_VERSION="auto")
    harness.llu.set_min_version("4.17.0")
    result = harness.run()
    assert result["uploaded"] > 0 and result["linkup_requests"] == 2  # the 920 reply and the retry
    harness.tick(300)
    harness.new_container()
    result = harness.run()
    assert result["linkup_requests"] == 1  # remembered: no 920 first
    assert harness.llu.requests[-1].headers["version"] == "4.17.0"


def test_minimum_version_5_means_the_api_was_retired_and_is_asked_again_hourly(harness: Harness) -> None:
    healthy_start(harness, LINK_UP_VERSION="auto")
    harness.llu.set_min_version("5.0.0")
    with pytest.raises(errors.LinkUpVersionRejected) as err:
        harness.run()
    assert "retired" in str(err.value) and err.value.needs_person
    assert harness.stored_account().account.version is None  # a 5.x minimum is never adopted
    for _ in range(11):  # 55 minutes: held back, "needs you", no request
        harness.tick(300)
        result = harness.run()
        assert result["skipped"] == "version" and result["linkup_requests"] == 0
    harness.llu.set_min_version("4.16.0")  # Abbott takes it back
    harness.tick(300)
    result = harness.run()  # an hour after the refusal: asked again, by itself
    assert result["linkup_requests"] == 1 and result["uploaded"] > 0
    assert harness.stored_account().account.rejected_version is None


def template_version() -> str:
    from tests.support.template import function_environment

    return function_environment()["LINK_UP_VERSION"]


def test_minimum_bump_with_the_template_defaults_needs_no_person(harness: Harness, logs: LogCapture) -> None:
    """Issue #10, done-when: Abbott raises the minimum to 4.17.0; with the template's defaults the bridge
    adopts it in the same run, with no login and no person, and keeps uploading."""
    assert template_version() == "auto"
    healthy_start(harness, LINK_UP_VERSION=template_version())
    logs.text()
    harness.llu.set_min_version("4.17.0")
    before = len(ns_instants(harness.ns))
    result = harness.run()
    assert result["uploaded"] >= 1 and len(ns_instants(harness.ns)) == before + result["uploaded"]
    assert result["logins"] == 0 and harness.llu.logins == 1
    assert [r.headers["version"] for r in harness.llu.requests[-2:]] == ["4.16.0", "4.17.0"]
    text = logs.text()
    assert "4.17.0" in text and "from now on" in text
    assert '"ActionRequired"' not in text and '"RunFailed"' not in text
    assert harness.stored_account().account.version == "4.17.0"
    for _ in range(3):  # later runs, also in new containers, start with 4.17.0: one request each
        harness.tick(300)
        harness.new_container()
        result = harness.run()
        assert result["linkup_requests"] == 1 and result["uploaded"] >= 1
        assert harness.llu.requests[-1].headers["version"] == "4.17.0"
    assert harness.llu.logins == 1
    assert_clean_series(harness.llu, harness.ns)


def test_minimum_bump_before_the_first_run_is_adopted_on_the_connections_call(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.llu.set_min_version("4.17.0")
    harness.provision(LINK_UP_VERSION=template_version())
    result = harness.run()
    assert result["uploaded"] > 100 and harness.llu.logins == 1
    assert harness.llu.count("/llu/connections") == 3  # the 920, the retry, the graph


@pytest.mark.parametrize("minimum", ["4.16.0", "4.12.0", None])
def test_contradictory_920_backs_off_and_recovers(harness: Harness, minimum: str | None) -> None:
    """A 920 naming the version already sent (or a lower one, or none) is a fault, not a refusal."""
    healthy_start(harness, LINK_UP_VERSION=template_version())
    data = {"minimumVersion": minimum} if minimum else {}
    body = json.dumps({"status": 920, "data": data})
    harness.llu.fail_next(3, status=403, body=body, path="/llu/connections/")
    with pytest.raises(errors.LinkUpVersionContradicted) as err:
        harness.run()
    assert err.value.reason == "server_error" and not err.value.needs_person
    account = harness.stored_account().account
    assert account.rejected_version is None and account.version is None  # nothing adopted, nothing blocked
    assert account.backoff_reason == "server_error"
    result = harness.run()
    assert result["skipped"] == "server_error" and result["linkup_requests"] == 0
    for _ in range(3):  # the back-off doubles while the fault lasts, then the bridge recovers by itself
        harness.tick(float(harness.stored_account().account.backoff_until) - harness.clock() + 1)
        try:
            result = harness.run()
        except errors.LinkUpVersionContradicted:
            continue
        break
    assert result["uploaded"] >= 1 and not result.get("skipped")
    assert harness.stored_account().account.backoff_failures == 0
    assert harness.llu.logins == 1
    assert_clean_series(harness.llu, harness.ns)


def test_pinned_refused_version_is_asked_again_hourly(harness: Harness) -> None:
    healthy_start(harness, LINK_UP_VERSION="4.16.0")
    harness.llu.set_min_version("4.17.0")
    with pytest.raises(errors.LinkUpVersionRejected):
        harness.run()
    asked = []
    for _ in range(36):  # three hours of 5-minute runs
        harness.tick(300)
        try:
            result = harness.run()
        except errors.LinkUpVersionRejected:
            asked.append(harness.clock())
            continue
        assert result["skipped"] == "version"
        assert result["linkup_requests"] == 0
    assert len(asked) == 3 and all(b - a == 3600 for a, b in itertools.pairwise(asked))
    assert harness.stored_account().account.version is None  # pinned: never adopted
    harness.llu.set_min_version("4.16.0")  # LibreLink Up accepts it again: the next hourly try recovers
    harness.tick(3600)
    result = harness.run()
    assert result["uploaded"] >= 1 and harness.llu.logins == 1


def test_missing_header_reply_is_named(harness: Harness) -> None:
    healthy_start(harness)
    harness.llu.fail_next(
        1, status=400, body=fixture_bytes("error-400-required-header-missing.json"), path="/llu/connections/"
    )
    with pytest.raises(errors.LinkUpMissingHeader) as err:
        harness.run()
    assert "Update linkup-sync" in str(err.value)


def test_unknown_patient_lists_the_ids_that_exist(harness: Harness) -> None:
    patient = harness.llu.add_patient(EMAIL)
    harness.provision(connection="00000000-0000-4000-8000-000000000000")
    with pytest.raises(errors.LinkUpPatientNotFound) as err:
        harness.run()
    assert patient.id in str(err.value) and "LINK_UP_CONNECTION" in str(err.value)


def test_no_connections_explains_the_invitation(harness: Harness) -> None:
    harness.provision()
    with pytest.raises(errors.LinkUpNoConnections) as err:
        harness.run()
    assert "invite" in str(err.value)


def test_revoked_ticket_means_one_relogin_and_one_retry(harness: Harness) -> None:
    healthy_start(harness)
    harness.llu.revoke_tokens()
    graphs_before = harness.llu.count("/llu/connections/")
    result = harness.run()
    assert result["logins"] == 1 and harness.llu.logins == 2
    assert harness.llu.count("/llu/connections/") - graphs_before == 2
    harness.llu.revoke_tokens()
    harness.llu.fail_next(2, status=401, body=fixture_bytes("error-401-invalid-jwt.json"), path="/llu/connections/")
    harness.tick(300)
    with pytest.raises(errors.LinkUpUnauthorized):
        harness.run()
    assert harness.llu.logins == 3  # one re-login, never a loop


def test_two_overlapping_runs_never_both_log_in(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    # the first login is held (below the 10 s read timeout) while the second run starts
    harness.llu.delay(1, 8.0, path="/llu/auth/login")
    results: list[dict[str, object]] = []

    def one_container() -> None:
        from tools.run_handler import LocalContext

        import app
        from linkup_sync.runtime import Dependencies

        deps = Dependencies.from_env(harness.env, clock=harness.clock)
        deps.deadline_s = 60  # longer than the held login: the overlap, not the deadline, is under test
        app.DEPENDENCIES = deps
        try:
            results.append(app.handler(harness.event(), LocalContext()))
        except errors.LinkupSyncError as exc:
            results.append({"error": exc.reason})

    first = threading.Thread(target=one_container)
    first.start()
    waited = time.monotonic() + 60
    # the first run holds the login lock (its login request is being held): only then start the second
    while not any("login_lock_until" in item for item in harness.state_items()) and time.monotonic() < waited:
        time.sleep(0.05)
    second = threading.Thread(target=one_container)
    second.start()
    second.join(60)
    first.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert harness.llu.logins == 1
    assert sorted(json.dumps(r.get("skipped"), default=str) for r in results).count('"login_in_progress"') == 1
    assert len(ns_instants(harness.ns)) > 0


def test_http_430_on_login_backs_off_without_another_login(harness: Harness) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()
    harness.llu.http_430_on_login(1)
    with pytest.raises(errors.LinkUpBlocked) as err:
        harness.run()
    assert "HTTP 430" in str(err.value)
    harness.tick(30)
    assert harness.run()["skipped"] == "blocked"
    assert harness.llu.logins == 1
    recover_and_check(harness)
    assert harness.llu.logins == 2
