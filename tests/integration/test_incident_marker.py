"""Issue 25: open incidents known from the state's Query, so every steady-state run makes at most 3 AWS calls.

The real handler against the LibreLink Up simulator, the Nightscout stand-in and moto (one virtual clock).
AWS calls are counted where botocore sends them (a 'before-call' hook on each client of the run).
A warm container reads the incidents only when it has reason to: its first run, a problem it sees,
incidents it left open, or the marker beside the account's state saying another container left some open.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from tools.local_stack import AwsCalls

from linkup_sync import errors
from linkup_sync.alerts import SnsAlerts
from linkup_sync.runtime import Dependencies, run_once
from linkup_sync.secrets import SecretsManagerCredentials
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import account_key
from tests.integration.harness import EMAIL, PASSWORD, Harness

HOUR = 3600
STEP = 300  # the personal stack's default schedule
WRONG_TOKEN = "wrong-0123456789abcdef"
TYPO = "fiona.folower@example.invalid"  # the username as first mistyped into the secret


def run(h: Harness) -> dict[str, Any] | None:
    try:
        return h.run()
    except errors.LinkupSyncError:
        return None


def provision(h: Harness) -> None:
    h.llu.add_patient(EMAIL)
    h.provision()


def calls_of(h: Harness, step: Any) -> list[str]:
    """The AWS calls one run made (the harness counts every client of its warm container)."""
    before = len(h.aws_calls.calls)
    step()
    return h.aws_calls.calls[before:]


class Container:
    """A warm Lambda container of its own (its own dependencies, caches and counted clients)."""

    def __init__(self, h: Harness) -> None:
        self.deps = Dependencies.from_env(h.env, clock=h.clock)
        self.calls = AwsCalls()
        cast(DynamoDBStateStore, self.deps.store).client.meta.events.register("before-call", self.calls)
        creds = cast(SecretsManagerCredentials, self.deps.credentials)
        creds.provider.client.meta.events.register("before-call", self.calls)
        creds.provider.clear_cache()
        assert self.deps.alerts is not None
        cast(SnsAlerts, self.deps.alerts).client.meta.events.register("before-call", self.calls)

    def run(self) -> list[str]:
        """One run; the AWS calls it made."""
        before = len(self.calls.calls)
        with contextlib.suppress(errors.LinkupSyncError):  # a failing run is part of an incident here
            run_once(self.deps)
        return self.calls.calls[before:]


def marker(h: Harness, username: str = EMAIL) -> frozenset[tuple[str, str]]:
    client = boto3.client("dynamodb", endpoint_url=h.moto_endpoint)
    store = DynamoDBStateStore(h.env["STATE_TABLE_NAME"], client=client)
    return store.load(account_key(username)).incidents_open


def put_secret_as(h: Harness, username: str) -> None:
    boto3.client("secretsmanager", endpoint_url=h.moto_endpoint).put_secret_value(
        SecretId=h.secret_arn,
        SecretString=json.dumps(
            {
                "LINK_UP_USERNAME": username,
                "LINK_UP_PASSWORD": PASSWORD,
                "NIGHTSCOUT_URL": h.ns.base_url,
                "NIGHTSCOUT_API_TOKEN": h.ns_token,
            }
        ),
    )


@pytest.mark.slow
def test_a_warm_container_makes_at_most_3_aws_calls_on_every_run_of_3_hours(harness: Harness) -> None:
    provision(harness)
    first = calls_of(harness, harness.run)
    # The first run of a new container, 7 calls: the secret, the state, its login (lock, ticket, patient),
    # the upload record, and the incidents once.
    assert first == ["GetSecretValue", "Query", *["UpdateItem"] * 4, "Query"], first
    per_run: list[list[str]] = []
    for _ in range(3 * HOUR // STEP):
        harness.tick(STEP)
        per_run.append(calls_of(harness, lambda: run(harness)))
    assert all(len(calls) <= 3 for calls in per_run), [c for c in per_run if len(c) > 3]
    assert all(calls.count("Query") == 1 for calls in per_run)  # the state's; never the incidents'
    # the hourly secret read is among them: that run is the one with 3
    hourly = [calls for calls in per_run if "GetSecretValue" in calls]
    assert len(hourly) == 3 and all(calls == ["GetSecretValue", "Query", "UpdateItem"] for calls in hourly)
    assert harness.emails() == [] and marker(harness) == frozenset()


@pytest.mark.slow
def test_a_quiet_container_learns_of_an_incident_from_the_marker_and_closes_it(harness: Harness) -> None:
    """What the hourly re-read did: container A opens an incident; warm container B, which read the
    incidents on its first run and has been quiet since, learns of it from the state's marker, closes it
    when the problem is gone and sends the all-clear; then B is back to at most 3 calls a run."""
    provision(harness)
    harness.ns_token = harness.ns.uploader_token()
    b = Container(harness)
    assert b.run().count("Query") == 2  # its first run reads the incidents: none
    harness.tick(STEP)
    assert b.run() == ["Query", "UpdateItem"]  # quiet

    harness.put_secret(ns_token=WRONG_TOKEN)  # a new container A reads the wrong token: Nightscout refuses it
    a = Container(harness)
    harness.tick(STEP)
    opened = a.run()
    assert opened.count("Query") == 2 and opened[-1] == "UpdateItem", opened  # the incidents, then the marker
    (mail,) = harness.emails()
    assert "refuses the bridge's token" in mail["subject"]
    assert marker(harness) == {("nightscout_token", "")}

    harness.put_secret(ns_token=harness.ns_token)  # fixed; A is gone (no more runs of it)
    harness.tick(STEP)
    closing = b.run()
    assert closing.count("Query") == 2, closing  # B learned from its state's marker, and read them
    subjects = [m["subject"] for m in harness.emails()]
    assert len(subjects) == 2 and "solved" in subjects[1], subjects
    assert marker(harness) == frozenset()
    for _ in range(12):  # the marker is clear: steady again, the secret's hourly read included
        harness.tick(STEP)
        calls = b.run()
        assert len(calls) <= 3 and calls.count("Query") == 1, calls
    assert len(harness.emails()) == 2


@pytest.mark.slow
def test_an_incident_of_a_mistyped_username_is_closed_by_the_container_that_knows_it_open(
    harness: Harness,
) -> None:
    """The marker lives in the account's partition; fixing the username changes the partition. The
    container that opened the incident keeps reading the incidents until it is closed."""
    provision(harness)
    put_secret_as(harness, TYPO)
    assert run(harness) is None  # LibreLink Up refuses the unknown username
    (mail,) = harness.emails()
    assert "rejected the password" in mail["subject"]
    assert marker(harness, TYPO) == {("bad_credentials", "")}

    put_secret_as(harness, EMAIL)  # the same warm container: a rejected login re-reads the secret at once
    harness.tick(STEP)
    fixed = calls_of(harness, lambda: run(harness))
    assert fixed.count("Query") == 2, fixed  # the new partition's marker is empty; the container knows
    subjects = [m["subject"] for m in harness.emails()]
    assert len(subjects) == 2 and "solved" in subjects[1], subjects
    harness.tick(STEP)
    steady = calls_of(harness, lambda: run(harness))
    assert steady == ["Query", "UpdateItem"], steady
    assert marker(harness) == frozenset()


@pytest.mark.slow
def test_an_incident_of_a_mistyped_username_is_closed_by_the_next_cold_start(harness: Harness) -> None:
    provision(harness)
    put_secret_as(harness, TYPO)
    assert run(harness) is None
    put_secret_as(harness, EMAIL)
    harness.new_container()  # the container that knew it open is gone
    harness.tick(STEP)
    assert run(harness) is not None
    subjects = [m["subject"] for m in harness.emails()]
    assert len(subjects) == 2 and "solved" in subjects[1], subjects


@pytest.mark.slow
def test_an_all_clear_that_could_not_be_sent_is_sent_by_the_next_run(harness: Harness) -> None:
    """A message the desk could not send gives its slot back and the next run tries again (the incidents
    package's promise). The incident is closed by then: the container must still read the incidents until
    its all-clear went out, and so must another container (the marker says so), as the hourly re-read did
    before issue 25."""
    provision(harness)
    c = Container(harness)
    c.run()
    harness.llu.set_password(EMAIL, "wrong password 123")  # changed in the app; the secret has the old one
    harness.llu.revoke_tokens()
    harness.tick(STEP)
    c.run()
    (mail,) = harness.emails()
    assert "rejected the password" in mail["subject"]

    sns_down = [True]

    def refuse(**_: Any) -> None:
        if sns_down[0]:
            raise EndpointConnectionError(endpoint_url="https://sns.invalid")

    assert c.deps.alerts is not None
    cast(SnsAlerts, c.deps.alerts).client.meta.events.register("before-call.sns.Publish", refuse)
    harness.put_secret(password="wrong password 123")  # fixed: a rejected login re-reads the secret at once
    harness.tick(STEP)
    c.run()  # the login works: the incident is closed, its all-clear cannot be sent
    assert len(harness.emails()) == 1
    assert marker(harness) == {("bad_credentials", "")}  # another container would send it too

    sns_down[0] = False
    harness.tick(STEP)
    resent = c.run()
    assert resent.count("Query") == 2 and "Publish" in resent, resent
    subjects = [m["subject"] for m in harness.emails()]
    assert len(subjects) == 2 and "solved" in subjects[1], subjects
    assert marker(harness) == frozenset()
    for _ in range(3):  # then steady again
        harness.tick(STEP)
        calls = c.run()
        assert len(calls) <= 3 and calls.count("Query") == 1, calls
    assert len(harness.emails()) == 2
