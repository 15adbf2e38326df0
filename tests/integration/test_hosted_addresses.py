"""Issue 21: the hosted worker reaches only public Nightscout sites, checked on the address it connects to.

The hosted stack of tools/hosted_stack.py (moto in process, the simulators on 127.0.0.1) with a worker
as hosted.yaml deploys it: without LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT. A fake resolver plays DNS: an
account added while its site's name pointed to a public address is run after the name was changed to
point at 127.0.0.1 (a rebinding attack does this between two lookups). The stack's own LibreLink Up
address (the simulator, on 127.0.0.1 too) is the operator's setting and stays reachable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tools.hosted_stack import HostedPerson, HostedStack

from linkup_sync.addresses import ALLOW_LOOPBACK_ENV
from linkup_sync.hosted.worker import Outcome, Worker
from tests.fakes import FakeDns, package_log


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def lines() -> Iterator[Lines]:
    with package_log(Lines()) as handler:
        yield handler


def hosted_worker(stack: HostedStack, dns: FakeDns, *, allow_loopback: bool) -> Worker:
    """A worker container as hosted.yaml makes it (the variable unset), or as the tests' stack does."""
    env = {k: v for k, v in stack.stack_env.items() if k != ALLOW_LOOPBACK_ENV}
    if allow_loopback:
        env[ALLOW_LOOPBACK_ENV] = "true"
    stack.stack_env = env
    stack.worker = stack.new_worker(resolve=dns)
    return stack.worker


def named_site_person(stack: HostedStack, host: str) -> HostedPerson:
    """An account whose NIGHTSCOUT_URL is https://<host>:<port of the stand-ins>/s/<n>."""
    person = stack.add_person(interval=1)
    site_url = person.site_url.replace("http://127.0.0.1", f"https://{host}")
    raw: dict[str, Any] = {
        "LINK_UP_USERNAME": person.email,
        "LINK_UP_PASSWORD": person.password,
        "NIGHTSCOUT_URL": site_url,
        "NIGHTSCOUT_API_TOKEN": person.site.admin_token(),
        "LINK_UP_VERSION": "4.16.0",
        "SYNC_INTERVAL_MINUTES": 1,
    }
    stack.add_account(raw, replace=True)
    person.site_url = site_url
    return person


def outcomes(stack: HostedStack) -> dict[str, Outcome]:
    result = stack.run_minute()
    return {o.account: o for batch in result.batches for o in batch.outcomes}


def test_the_worker_refuses_a_site_whose_name_now_resolves_inside(stack: HostedStack, lines: Lines) -> None:
    dns = FakeDns({"ns.example.org": ["127.0.0.1"]})  # added while it pointed elsewhere; now: this machine
    person = named_site_person(stack, "ns.example.org")
    hosted_worker(stack, dns, allow_loopback=False)
    found = outcomes(stack)[person.account_id]
    assert found.status == "failed" and found.reason == "nightscout_unreachable", found
    assert "ns.example.org" in dns.asked  # resolved by the worker's pool when it connected
    assert person.site.requests == []  # not one request reached the site
    assert stack.llu.requests  # the stack's own LibreLink Up address is reachable
    text = lines.text()
    assert "the site's address resolves to 127.0.0.1, a loopback address (this machine itself)" in text
    assert "Fix: give the site's public https:// address" in text


def test_a_stored_site_on_this_machine_is_refused_before_the_run(stack: HostedStack, lines: Lines) -> None:
    person = stack.add_person(interval=1)  # http://127.0.0.1:<port>/s/0, stored by the tests' own check
    hosted_worker(stack, FakeDns({}), allow_loopback=False)
    found = outcomes(stack)[person.account_id]
    assert found.status == "failed" and found.reason == "config", found
    assert person.site.requests == [] and stack.llu.requests == []  # not even a LibreLink Up request
    assert "NIGHTSCOUT_URL is a loopback address (this machine itself)" in lines.text()


def test_with_the_tests_variable_the_same_site_is_served(stack: HostedStack) -> None:
    person = stack.add_person(interval=1)
    hosted_worker(stack, FakeDns({}), allow_loopback=True)
    found = outcomes(stack)[person.account_id]
    assert found.status == "ran" and found.report is not None and found.report.uploaded > 0, found
    assert person.site.requests
