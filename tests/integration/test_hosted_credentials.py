"""Hosted accounts: replaced credentials are checked, and what the worker stores is sealed (issue 21).

The hosted stack of tools/hosted_stack.py (moto's DynamoDB, SQS and KMS, the LibreLink Up simulator
and one Nightscout stand-in per site) on a virtual clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from tools.hosted_stack import HostedPerson, HostedStack

from linkup_sync.hosted.registry import Registry
from linkup_sync.hosted.vault import context
from linkup_sync.state.dynamodb import SEALED_ACCOUNT, SEALED_ATTRIBUTE, SEALED_TARGET
from tests.support.iam import Recorder, dispatch_policy, worker_policy
from tests.support.moto_hosted import worker_on_recorded_clients
from tests.support.template import HOSTED_TEMPLATE_PATH, transformed_template

HISTORY_S = 3600


@contextlib.contextmanager
def hosted() -> Iterator[HostedStack]:
    stack = HostedStack(patient_history_s=HISTORY_S)
    try:
        yield stack
    finally:
        stack.stop()


class KmsCalls:
    """Every KMS request the stack's client sends (the worker's and the operator's share it)."""

    def __init__(self, stack: HostedStack) -> None:
        self.calls: list[str] = []
        stack.kms.meta.events.register("before-call.kms", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> list[str]:
        taken, self.calls = self.calls, []
        return taken


def statuses(stack: HostedStack, minutes: int) -> list[str]:
    return [o.status for _ in range(minutes) for b in stack.run_minute().batches for o in b.outcomes]


def raw_account(person: HostedPerson, **changes: Any) -> dict[str, Any]:
    raw = {
        "LINK_UP_USERNAME": person.email,
        "LINK_UP_PASSWORD": person.password,
        "NIGHTSCOUT_URL": person.site_url,
        "NIGHTSCOUT_API_TOKEN": person.site.admin_token(),
        "LINK_UP_VERSION": "4.16.0",
        "SYNC_INTERVAL_MINUTES": 1,
    }
    return {**raw, **changes}


def test_a_replace_with_a_wrong_password_and_another_site_sends_that_site_no_reading(aws: None) -> None:
    with hosted() as stack:
        person = stack.add_person(interval=1)
        assert statuses(stack, 2) == ["ran", "ran"]
        before = len(person.site.sgv_entries())
        assert before > 0 and stack.logins_by_email()[person.email] == 1
        polls = len(stack.llu.served)

        number, other = stack.ns.add_site()
        wrong = raw_account(
            person,
            LINK_UP_PASSWORD="not the password",
            NIGHTSCOUT_URL=stack.ns.url(number),
            NIGHTSCOUT_API_TOKEN=other.admin_token(),
        )
        stack.add_account(wrong, replace=True)
        stack.clock.advance(300)  # readings the old ticket could fetch
        assert statuses(stack, 6) == ["failed"] + ["skipped"] * 5
        assert stack.logins_by_email()[person.email] == 2  # exactly one try of the new password, then the breaker
        # no reading, no read-back: only the incident's announcement that the password was refused
        assert other.sgv_entries() == []
        assert [(r.method, r.path) for r in other.requests] == [("POST", "/api/v1/treatments.json")]
        assert "password" in repr(other.requests[0].body)
        assert len(person.site.sgv_entries()) == before  # nor did the old site get any more
        assert len(stack.llu.served) == polls  # no graph asked for on the old ticket


def test_a_replace_of_the_nightscout_site_alone_keeps_the_ticket(aws: None) -> None:
    with hosted() as stack:
        person = stack.add_person(interval=1)
        assert statuses(stack, 1) == ["ran"]
        number, other = stack.ns.add_site()
        stack.add_account(
            raw_account(person, NIGHTSCOUT_URL=stack.ns.url(number), NIGHTSCOUT_API_TOKEN=other.admin_token()),
            replace=True,
        )
        assert statuses(stack, 2) == ["ran", "ran"]
        assert stack.logins_by_email()[person.email] == 1 and len(other.sgv_entries()) > 0


def test_a_replace_with_the_new_password_logs_in_once(aws: None) -> None:
    with hosted() as stack:
        person = stack.add_person(interval=1)
        assert statuses(stack, 1) == ["ran"]
        stack.llu.set_password(person.email, "a new password")
        stack.add_account(raw_account(person, LINK_UP_PASSWORD="a new password"), replace=True)
        assert statuses(stack, 3) == ["ran"] * 3
        assert stack.logins_by_email()[person.email] == 2


def test_tickets_jwts_and_fingerprints_are_stored_only_sealed_and_cost_no_kms_call_per_run(aws: None) -> None:
    with hosted() as stack:
        kms = KmsCalls(stack)
        person = stack.add_person(interval=1, v3=True)
        assert kms.take() == ["Encrypt"]  # the operator's
        assert statuses(stack, 1) == ["ran"]
        # the first run: its credentials, then the ticket and fingerprint (login) and the JWT, sealed
        assert sorted(kms.take()) == ["Decrypt", "Encrypt", "Encrypt"]
        assert statuses(stack, 20) == ["ran"] * 20
        assert kms.take() == []  # the steady state: no KMS call (the credentials are cached an hour)

        items = stack.ddb.scan(TableName=stack.table, ConsistentRead=True)["Items"]
        state = [item for item in items if item["pk"]["S"].startswith("acct#")]
        assert {item["sk"]["S"].split("#")[0] for item in state} == {"account", "target"}
        for item in state:
            assert not set(item) & {*SEALED_ACCOUNT, *SEALED_TARGET}, sorted(item)
            assert SEALED_ATTRIBUTE in item
        ticket = stack.llu.account(person.email)
        dump = repr(items)
        assert ticket.user_id not in dump and person.password not in dump

        # sealed under the account's own context: another account's cannot open it
        (account_item,) = [item for item in state if item["sk"]["S"] == "account"]
        blob = account_item[SEALED_ATTRIBUTE]["B"]
        opened = stack.kms.decrypt(CiphertextBlob=blob, EncryptionContext=context(person.account_id))
        assert b"ticket_token" in opened["Plaintext"] and b"creds_tag" in opened["Plaintext"]
        with pytest.raises(stack.kms.exceptions.InvalidCiphertextException):
            stack.kms.decrypt(CiphertextBlob=blob, EncryptionContext=context("000000000000"))
        kms.take()  # the test's own two

        # a new container opens each ciphertext once: credentials, account state, the target's JWT
        stack.worker = stack.new_worker()
        assert statuses(stack, 5) == ["ran"] * 5
        assert sorted(kms.take()) == ["Decrypt", "Decrypt", "Decrypt"]
        assert stack.logins_by_email()[person.email] == 1


def test_every_call_of_a_hosted_hour_is_allowed_by_the_functions_grants(aws: None) -> None:
    """The real worker and dispatcher on their own recorded clients, through logins, uploads, a
    rejected password with its incident, a replaced account: each DynamoDB and KMS request is
    allowed by hosted.yaml's grants (the partitions, attributes and contexts of issue 21)."""
    cfn = transformed_template(path=HOSTED_TEMPLATE_PATH)
    with hosted() as stack:
        worker_calls, dispatch_calls = Recorder(), Recorder()
        unsigned = Config(signature_version=UNSIGNED)
        stack.worker = worker_on_recorded_clients(stack, worker_calls)
        stack.dispatcher.registry = Registry(
            stack.table, dispatch_calls.attach(boto3.client("dynamodb", config=unsigned)), stack.clock
        )
        people = [stack.add_person(interval=1, v3=number % 2 == 0) for number in range(3)]
        stack.add_account(raw_account(people[0], LINK_UP_PASSWORD="wrong"), replace=True)
        assert sorted(statuses(stack, 3)) == ["failed", *["ran"] * 6, "skipped", "skipped"]
        stack.llu.set_password(people[1].email, "new")
        stack.add_account(raw_account(people[1], LINK_UP_PASSWORD="new"), replace=True)
        stack.clock.advance(3600)  # the credentials cache ends; the stale-reading check runs
        statuses(stack, 2)
        assert {call.action for call in worker_calls.calls} == {
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "kms:Decrypt",
            "kms:Encrypt",
        }
        assert worker_calls.denied(worker_policy(cfn)) == []
        assert dispatch_calls.calls and dispatch_calls.denied(dispatch_policy(cfn)) == []
