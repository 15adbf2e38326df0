"""Issue #15: incidents told by the bridge itself, over 24+ simulated hours of scheduled runs.

The real handler runs against the LibreLink Up simulator, the Nightscout stand-in and moto (DynamoDB,
Secrets Manager, SNS with a queue subscribed as the inbox). For each incident a person must act on:
exactly one e-mail and one Nightscout announcement when it begins, one reminder after 24 hours, one
all-clear of each when it is solved; nothing in healthy runs; nothing twice across cold starts or two
overlapping runs; no secret in any message.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from linkup_sync import errors
from linkup_sync.runtime import Dependencies, run_once
from tests.integration.harness import EMAIL, PASSWORD, Harness

HOUR = 3600
STEP = 900  # a run every 15 minutes: the incidents do not depend on the schedule's rate
TREATMENT_ROLE = [
    *("api:entries:create", "api:entries:read", "api:entries:update"),
    *("api:treatments:create", "api:treatments:read", "api:treatments:update"),
]


def full_token(h: Harness) -> str:
    h.ns.add_role("bridge-announce", TREATMENT_ROLE)
    try:
        return h.ns.access_token("bridge-announce")
    except KeyError:
        return h.ns.add_subject("bridge-announce", ["bridge-announce"])


def run(h: Harness) -> dict[str, Any] | None:
    """One scheduled run; a failing run is a normal part of an incident here."""
    try:
        return h.run()
    except errors.LinkupSyncError:
        return None


@dataclass
class Scenario:
    break_it: Callable[[Harness], object]  # often a lambda doing several steps as a tuple
    fix_it: Callable[[Harness], object]
    subject: str  # words the first e-mail's subject must contain
    todo: str  # words the body's "what to do" must contain
    email: bool = True
    announce: bool = True
    env: dict[str, str] = field(default_factory=dict)


def _put_incomplete_secret(h: Harness) -> None:
    boto3.client("secretsmanager", endpoint_url=h.moto_endpoint).put_secret_value(
        SecretId=h.secret_arn, SecretString=json.dumps({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD})
    )
    h.new_container()


def _version_env(version: str) -> Callable[[Harness], None]:
    def change(h: Harness) -> None:
        h.env["LINK_UP_VERSION"] = version  # a redeploy with the new parameter: a new container
        h.new_container()

    return change


def _unfollow(h: Harness) -> None:
    account = h.llu.account(EMAIL)
    h.removed = list(account.patient_ids)  # type: ignore[attr-defined]
    account.patient_ids.clear()


def _follow_again(h: Harness) -> None:
    h.llu.account(EMAIL).patient_ids.extend(h.removed)  # type: ignore[attr-defined]


SCENARIOS: dict[str, Scenario] = {
    "password_rejected": Scenario(
        # the password was changed in the app; the secret still has the old one
        lambda h: (h.llu.set_password(EMAIL, "wrong password 123"), h.llu.revoke_tokens()),
        # no new container: after a rejected login the next run reads the secret again at once
        lambda h: h.put_secret(password="wrong password 123", ns_token=h.ns_token),
        "rejected the password",
        "LINK_UP_PASSWORD",
    ),
    "terms": Scenario(
        lambda h: (h.llu.force_steps(EMAIL, ["tou"]), h.llu.revoke_tokens()),
        lambda h: h.llu.force_steps(EMAIL, []),
        "new terms accepted",
        "Open the LibreLink Up app, sign in as the follower and accept the new Terms of Use",
    ),
    "email_verification": Scenario(
        lambda h: (h.llu.force_steps(EMAIL, ["verifyEmail"]), h.llu.revoke_tokens()),
        lambda h: h.llu.force_steps(EMAIL, []),
        "e-mail address verified",
        "verify the e-mail address",
    ),
    "app_version_refused": Scenario(
        lambda h: h.llu.set_min_version("4.99.0"),
        _version_env("4.99.0"),
        "refused the app version",
        "LinkUpVersion=4.99.0",
    ),
    "api_retired": Scenario(
        lambda h: h.llu.set_min_version("5.0.0"),
        lambda h: (h.llu.set_min_version("4.16.0"), _version_env("4.17.0")(h)),
        "retired the API",
        "update",
    ),
    "followed_person_gone": Scenario(_unfollow, _follow_again, "no longer shares", "invites the follower again"),
    "secret_incomplete": Scenario(
        _put_incomplete_secret,
        lambda h: h.put_secret(ns_token=h.ns_token),
        "secret is empty or incomplete",
        "put-secret-value",
        announce=False,  # the Nightscout address and token are what is missing: e-mail only
    ),
    "nightscout_token_refused": Scenario(
        lambda h: (h.put_secret(ns_token="wrong-0123456789abcdef"), h.new_container()),
        lambda h: h.put_secret(ns_token=h.ns_token),
        "refuses the bridge's token",
        "NIGHTSCOUT_API_TOKEN",
        announce=False,  # Nightscout refuses us: it cannot show it either
    ),
}


def provision(h: Harness, **env: str) -> None:
    h.llu.add_patient(EMAIL)
    h.provision(**env)
    h.ns_token = full_token(h)
    h.put_secret(ns_token=h.ns_token)


def terms_pending_after_a_healthy_run(h: Harness) -> None:
    """A healthy run, then LibreLink Up asks for new terms at the next login (a person must act)."""
    run(h)
    h.tick(STEP)
    h.llu.force_steps(EMAIL, ["tou"])
    h.llu.revoke_tokens()


def secrets_in(h: Harness) -> list[str]:
    ns = h.ns
    return [PASSWORD, "wrong password 123", h.ns_token, ns.api_secret, ns.api_secret_sha1, "wrong-0123456789abcdef"]


def assert_no_secret(h: Harness, texts: list[str]) -> None:
    blob = "\n".join(texts)
    for secret in secrets_in(h):
        assert secret not in blob, f"a secret of {len(secret)} characters was in a message"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_incident_is_told_once_reminded_after_a_day_and_cleared_once(harness: Harness, name: str) -> None:
    scenario = SCENARIOS[name]
    provision(harness, **scenario.env)
    for _ in range(4):  # healthy runs: nothing to tell
        assert run(harness) is not None
        harness.tick(STEP)
    assert harness.emails() == [] and harness.ns.announcements() == []

    scenario.break_it(harness)
    began = harness.clock()
    run(harness)
    mails = harness.emails()
    assert len(mails) == (1 if scenario.email else 0), mails
    if scenario.email:
        assert scenario.subject in mails[0]["subject"] and len(mails[0]["subject"]) < 100
        body = mails[0]["body"]
        assert "What happened:" in body and "Since:" in body and "What to do:" in body
        assert scenario.todo in body
        assert "Person:" not in body  # one person: no initials needed
    announced = harness.ns.announcements()
    assert len(announced) == (1 if scenario.announce else 0), announced
    if scenario.announce:
        (doc,) = announced
        assert doc["eventType"] == "Announcement" and doc["enteredBy"] == "linkup-sync"
        assert doc["isAnnouncement"] is True and scenario.subject in doc["notes"]
    assert not harness.ns.urgent_alarms_snoozed()  # nothing we posted silences Nightscout's alarms

    # a day and a bit of runs, with a new container and a brand-new process in between
    while harness.clock() < began + 25 * HOUR:
        harness.tick(STEP)
        if harness.clock() - began in (2 * HOUR, 20 * HOUR):
            harness.new_container()
        if harness.clock() - began == 3 * HOUR:
            with contextlib.suppress(RuntimeError):  # a failing run is what this incident looks like
                harness.cold_run()
        run(harness)
    mails = harness.emails()
    assert len(mails) == (2 if scenario.email else 0), [m["subject"] for m in mails]
    if scenario.email:
        assert "still open" in mails[1]["subject"] and "REMINDER" in mails[1]["body"]
    assert len(harness.ns.announcements()) == (1 if scenario.announce else 0)

    scenario.fix_it(harness)
    for _ in range(8):  # action_required retries the login hourly: within two hours it is solved
        harness.tick(STEP)
        run(harness)
    result = run(harness)
    assert result is not None and "skipped" not in result, result
    mails = harness.emails()
    assert len(mails) == (3 if scenario.email else 0), [m["subject"] for m in mails]
    if scenario.email:
        assert "solved" in mails[2]["subject"] and "Readings flow again" in mails[2]["body"]
    announced = sorted(harness.ns.announcements(), key=lambda d: d["created_at"])
    assert len(announced) == (2 if scenario.announce else 0)
    if scenario.announce:
        assert "solved" in announced[1]["notes"] and announced[1]["isAnnouncement"] is True
    for _ in range(8):  # healthy again: nothing more
        harness.tick(STEP)
        run(harness)
    assert len(harness.emails()) == (3 if scenario.email else 0)
    assert len(harness.ns.announcements()) == (2 if scenario.announce else 0)
    assert_no_secret(harness, [m["subject"] + m["body"] for m in harness.emails()])
    assert_no_secret(harness, [json.dumps(d) for d in harness.ns.treatments])


def test_healthy_day_sends_nothing(harness: Harness) -> None:
    provision(harness)
    for _ in range(96):
        assert run(harness) is not None
        harness.tick(STEP)
    assert harness.emails() == [] and harness.ns.announcements() == []


def overlapping_runs(h: Harness, count: int = 2) -> list[BaseException | dict[str, Any]]:
    """`count` containers running at the same moment (each with its own dependencies)."""
    from linkup_sync.secrets import SecretsManagerCredentials
    from linkup_sync.state.dynamodb import DynamoDBStateStore

    containers = [Dependencies.from_env(h.env, clock=h.clock) for _ in range(count)]
    for deps in containers:  # create the clients before the threads start
        assert isinstance(deps.store, DynamoDBStateStore) and deps.store.client is not None
        assert isinstance(deps.credentials, SecretsManagerCredentials)
        deps.credentials.provider.clear_cache()
    results: list[BaseException | dict[str, Any]] = []
    barrier = threading.Barrier(count)

    def one(deps: Dependencies) -> None:
        barrier.wait()
        try:
            results.append(run_once(deps).as_dict())
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one, args=(deps,)) for deps in containers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_overlapping_runs_tell_an_incident_and_its_end_once(harness: Harness) -> None:
    provision(harness)
    run(harness)
    harness.tick(STEP)
    harness.llu.set_password(EMAIL, "wrong password 123")
    harness.llu.revoke_tokens()
    for _ in range(3):  # the incident begins in three containers at once, three times over
        overlapping_runs(harness, 3)
        harness.tick(STEP)
    assert len(harness.emails()) == 1 and len(harness.ns.announcements()) == 1
    harness.put_secret(password="wrong password 123", ns_token=harness.ns_token)
    for _ in range(3):
        results = overlapping_runs(harness, 3)
        harness.tick(STEP)
    assert any(isinstance(r, dict) for r in results)
    subjects = [m["subject"] for m in harness.emails()]
    assert len(subjects) == 2 and "solved" in subjects[1], subjects
    assert len(harness.ns.announcements()) == 2


def test_stale_readings_are_announced_once_in_nightscout_and_cleared(harness: Harness) -> None:
    provision(harness)
    patient = harness.llu.patients[harness.llu.account(EMAIL).patient_ids[0]]
    run(harness)
    harness.tick(300)
    patient.offline(harness.clock() - 60, harness.clock() + 3 * HOUR)  # the phone stops uploading
    for _ in range(36):  # 3 hours of 5-minute runs, with a cold start in between
        run(harness)
        harness.tick(300)
        if len(harness.ns.announcements()) == 1:
            harness.new_container()
    announced = harness.ns.announcements()
    assert len(announced) == 1 and "no new reading for 30 minutes" in announced[0]["notes"]
    assert harness.emails() == []  # the stale-data alarm (CloudWatch) e-mails about this one
    for _ in range(6):
        harness.tick(300)
        run(harness)
    announced = sorted(harness.ns.announcements(), key=lambda d: d["created_at"])
    assert len(announced) == 2 and "solved" in announced[1]["notes"]
    assert all(d["isAnnouncement"] is True for d in announced)


def test_a_future_dated_reading_does_not_hide_stale_data(harness: Harness) -> None:
    """Issue 21: the stale-reading incident looks at the newest plausible reading. The phone stops
    uploading and LibreLink Up's current reading carries a date a year ahead (a wrong clock): it must not
    count as fresh, or nobody is told that no reading arrives."""
    provision(harness)
    patient = harness.llu.patients[harness.llu.account(EMAIL).patient_ids[0]]
    run(harness)
    harness.tick(300)
    patient.offline(harness.clock() - 60, harness.clock() + 3 * HOUR)
    harness.llu.future_readings(365 * 24 * HOUR, where="current", replies=None)
    for _ in range(12):  # an hour of 5-minute runs
        run(harness)
        harness.tick(300)
    announced = harness.ns.announcements()
    assert len(announced) == 1 and "no new reading for 30 minutes" in announced[0]["notes"]


def test_v3_announcements_carry_the_announcement_mark(harness: Harness) -> None:
    provision(harness, NIGHTSCOUT_API_V3="true")
    terms_pending_after_a_healthy_run(harness)
    run(harness)
    (doc,) = harness.ns.announcements()  # v3 stores what is sent: the mark must be in the request
    assert doc["isAnnouncement"] is True and doc["app"] == "linkup-sync"
    assert not harness.ns.urgent_alarms_snoozed()


def test_a_token_without_treatment_permissions_warns_once_and_readings_still_flow(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.llu.add_patient(EMAIL)
    harness.provision()  # the uploader token: entries only
    terms_pending_after_a_healthy_run(harness)
    capsys.readouterr()
    for _ in range(12):
        run(harness)
        harness.tick(STEP)
    out = capsys.readouterr().out
    assert out.count("Nightscout refused the announcement") == 1
    assert len(harness.emails()) == 1 and harness.ns.announcements() == []
    harness.llu.force_steps(EMAIL, [])
    before = len(harness.ns.sgv_entries())
    for _ in range(8):
        harness.tick(STEP)
        run(harness)
    assert len(harness.ns.sgv_entries()) > before  # readings flow although announcements are refused
    assert "Nightscout refused the announcement" not in capsys.readouterr().out  # no second warning


def test_announcements_can_be_turned_off(harness: Harness) -> None:
    provision(harness, NIGHTSCOUT_ANNOUNCE="false")
    terms_pending_after_a_healthy_run(harness)
    run(harness)
    assert len(harness.emails()) == 1 and harness.ns.announcements() == []


def test_several_people_name_the_person_by_initials(harness: Harness) -> None:
    first = harness.llu.add_patient(EMAIL, seed=1, first_name="Ada", last_name="Byron")
    second = harness.llu.add_patient(EMAIL, seed=2, first_name="Carl", last_name="Dane")
    harness.provision()
    token = full_token(harness)
    harness.secret_targets(
        [
            {"LINK_UP_CONNECTION": p.id, "NIGHTSCOUT_URL": harness.ns.base_url, "NIGHTSCOUT_API_TOKEN": token}
            for p in (first, second)
        ]
    )
    run(harness)  # a new container: it remembers the initials of the people it serves
    harness.tick(STEP)
    harness.llu.account(EMAIL).patient_ids.remove(second.id)
    run(harness)
    (mail,) = harness.emails()
    assert "Person: CD" in mail["body"] and "CD" in mail["subject"]
    assert "Carl" not in mail["body"] + mail["subject"] and "Dane" not in mail["body"]


def test_secret_is_read_hourly_and_at_once_after_a_rejected_login(harness: Harness) -> None:
    provision(harness)

    def reads() -> int:
        return int(harness.aws_calls.calls.count("GetSecretValue"))

    for _ in range(12):  # one warm container for an hour of 5-minute runs: one read
        run(harness)
        harness.tick(300)
    assert reads() == 1
    run(harness)
    assert reads() == 2  # the hour is up
    # the password is changed in the app: the login fails, and the very next run reads the secret again
    harness.llu.set_password(EMAIL, "wrong password 123")
    harness.llu.revoke_tokens()
    harness.tick(300)
    assert run(harness) is None
    harness.put_secret(password="wrong password 123", ns_token=harness.ns_token)
    harness.tick(300)
    result = run(harness)
    assert result is not None and "skipped" not in result and result["logins"] == 1  # fixed within one run
    assert reads() == 3  # the failed run used the cached secret; the next one read it again


def test_secret_is_read_again_at_once_after_a_nightscout_401(harness: Harness) -> None:
    provision(harness)
    run(harness)
    harness.put_secret(ns_token="wrong-0123456789abcdef")
    harness.new_container()
    harness.tick(300)
    assert run(harness) is None  # Nightscout refuses the token
    harness.put_secret(ns_token=harness.ns_token)
    harness.tick(300)
    result = run(harness)  # the same warm container picks the fixed secret up at once
    assert result is not None and result["uploaded"] >= 1
