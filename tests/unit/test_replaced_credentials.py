"""Replaced credentials are checked credentials (issue 21 finding 6, issue 23 finding 3).

A ticket, the remembered person and the bad-password block belong to the credentials they were
obtained with (a fingerprint, never the password). Another username or password drops the ticket
and the person and logs in once with what was given; a wrong one then meets the bad-password
breaker, and nothing reaches Nightscout. A change of the Nightscout settings alone keeps the ticket.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import pytest

from linkup_sync import errors, fingerprint, report
from linkup_sync.model import Credentials, Graph, Target, Ticket
from linkup_sync.readings import Reading
from linkup_sync.state.model import AccountState, StoredState, account_key
from linkup_sync.sync import SyncService
from tests.fakes import FakeLinkUp, FakeNightscout, MemoryStateStore

NOW = 1_800_000_000
USER = "f@example.invalid"
PATIENT = "p1"
RIGHT = "right"  # the account's password at LibreLink Up


@dataclass
class CheckingLinkUp(FakeLinkUp):
    """LibreLink Up that knows the account's password: a wrong one is refused, like the real one."""

    password: str = RIGHT
    attempts: list[str] = field(default_factory=list)  # the passwords tried, in order

    def login(self, username: str, password: str, region: str) -> Ticket:
        self.attempts.append(password)
        if password != self.password:
            self.logins += 1
            self.requests.append("login")
            raise errors.LinkUpBadCredentials()
        return super().login(username, password, region)


class World:
    def __init__(self) -> None:
        self.llu = CheckingLinkUp(connection_ids=[PATIENT], graphs={})
        self.sites: dict[str, FakeNightscout] = {}
        self.store = MemoryStateStore()
        self.now = NOW

    def creds(self, password: str = RIGHT, *, site: str = "https://one.example", version: str = "env") -> Credentials:
        target = Target(patient_id=None, nightscout_url=site, nightscout_token="token-one")
        return Credentials(username=USER, password=password, targets=(target,), version=version)

    def run(self, creds: Credentials) -> report.RunReport | errors.LinkupSyncError:
        self.now += 300
        current = Reading(int(self.now - 60) * 1000, 120, "Flat", "current")
        self.llu.graphs[PATIENT] = Graph(patient_id=PATIENT, current=current, history=())
        service = SyncService(
            source=self.llu,
            sinks=lambda target, stored: self.sites.setdefault(target.nightscout_url, FakeNightscout()),
            store=self.store,
            clock=lambda: self.now,
            region="eu",
        )
        try:
            return service.run(creds)
        except errors.LinkupSyncError as exc:
            return exc

    def uploaded(self, site: str) -> int:
        return len(self.sites[site].entries) if site in self.sites else 0

    @property
    def account(self) -> AccountState:
        return self.store.accounts[account_key(USER)]


def ok(result: report.RunReport | errors.LinkupSyncError) -> report.RunReport:
    assert isinstance(result, report.RunReport) and result.skipped is None, result
    return result


def test_a_wrong_new_password_never_rides_on_the_old_ticket() -> None:
    world = World()
    ok(world.run(world.creds()))
    assert world.llu.logins == 1 and world.uploaded("https://one.example") == 1
    wrong = world.creds("wrong", site="https://two.example")
    assert isinstance(world.run(wrong), errors.LinkUpBadCredentials)
    assert world.llu.attempts == ["right", "wrong"]  # the old ticket was not used: one login, refused
    for _ in range(5):  # then the breaker holds: no login, no graph, nothing sent
        result = world.run(wrong)
        assert isinstance(result, report.RunReport) and result.skipped == "bad_credentials"
    assert world.llu.attempts == ["right", "wrong"]
    assert world.llu.requests.count("graph") == 1
    two = world.sites["https://two.example"]  # made only to check its settings before LibreLink Up
    assert two.entries == {} and two.posts == [] and two.requests_made == 0
    assert world.account.ticket is None and world.account.patient_id is None


def test_the_right_new_password_logs_in_once_and_the_remembered_person_is_chosen_again() -> None:
    world = World()
    ok(world.run(world.creds()))
    assert world.account.patient_id == PATIENT
    world.llu.password = "new"
    world.llu.connection_ids = [PATIENT]
    before = world.llu.requests.count("connections")
    ok(world.run(world.creds("new")))
    assert world.llu.attempts == ["right", "new"]
    assert world.llu.requests.count("connections") == before + 1  # the person was asked for again
    ok(world.run(world.creds("new")))
    assert world.llu.logins == 2  # and the new ticket serves the following runs


def test_another_username_spelling_is_the_same_account() -> None:
    world = World()
    ok(world.run(world.creds()))
    upper = dataclasses.replace(world.creds(), username=" F@Example.Invalid ")
    ok(world.run(upper))
    assert world.llu.logins == 1


def test_changing_only_the_nightscout_settings_keeps_the_ticket() -> None:
    world = World()
    ok(world.run(world.creds()))
    other = world.creds(site="https://two.example", version="v2")
    other = dataclasses.replace(other, targets=(dataclasses.replace(other.targets[0], nightscout_token="token-two"),))
    ok(world.run(other))
    assert world.llu.logins == 1 and world.uploaded("https://two.example") == 1


def test_a_changed_password_lifts_the_block_of_the_rejected_one_in_the_same_secret_version() -> None:
    """Issue 23 finding 3: the command line's credentials have no version ("env"); a dry run with a
    wrong password recorded the block, and the right password was refused until --reset-login."""
    world = World()
    assert isinstance(world.run(world.creds("wrong")), errors.LinkUpBadCredentials)
    skipped = world.run(world.creds("wrong"))
    assert isinstance(skipped, report.RunReport) and skipped.skipped == "bad_credentials"
    ok(world.run(world.creds("right")))
    assert world.llu.attempts == ["wrong", "right"]
    assert world.account.bad_credentials_version is None and world.account.bad_credentials_tag is None
    # and going back to the rejected password is one login, then blocked again
    assert isinstance(world.run(world.creds("wrong")), errors.LinkUpBadCredentials)
    skipped = world.run(world.creds("wrong"))
    assert isinstance(skipped, report.RunReport) and skipped.skipped == "bad_credentials"
    assert world.llu.attempts == ["wrong", "right", "wrong"]


def test_a_block_stored_before_fingerprints_holds_for_its_secret_version() -> None:
    world = World()
    key = account_key(USER)
    world.store.accounts[key] = AccountState(bad_credentials_version="env", rev=1)
    skipped = world.run(world.creds("other"))
    assert isinstance(skipped, report.RunReport) and skipped.skipped == "bad_credentials"
    ok(world.run(world.creds("right", version="v2")))  # a new version still ends it
    assert world.llu.attempts == ["right"]


def test_a_ticket_stored_before_fingerprints_is_replaced_by_one_login(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    ok(world.run(world.creds()))
    key = account_key(USER)
    world.store.accounts[key] = dataclasses.replace(world.store.accounts[key], creds_tag=None)
    with caplog.at_level(logging.INFO, logger="linkup_sync"):
        ok(world.run(world.creds()))
    assert world.llu.logins == 2
    # said as what it is (an upgrade), not as a changed password: no warning for every account at upgrade
    assert [r for r in caplog.records if getattr(r, "reason", None) == "credentials_unchecked"]
    assert not [r for r in caplog.records if getattr(r, "reason", None) == "credentials_changed"]
    ok(world.run(world.creds()))
    assert world.llu.logins == 2


def test_the_fingerprint_is_neither_the_password_nor_shown() -> None:
    creds = World().creds("correct horse battery staple")
    slow, sealed = fingerprint.slow_fingerprint(creds), fingerprint.sealed_fingerprint(creds)
    for tag in (slow, sealed):
        assert "horse" not in tag and len(tag) < 40
    assert slow != fingerprint.slow_fingerprint(World().creds("correct horse battery stapler"))
    other_user = dataclasses.replace(creds, username="g@example.invalid")
    assert slow != fingerprint.slow_fingerprint(other_user)
    state = AccountState(creds_tag=slow, bad_credentials_tag=sealed)
    assert slow not in repr(state) and sealed not in repr(state)


def test_a_ticket_another_run_just_got_with_the_new_password_is_kept() -> None:
    """Two runs with the new password: the second read the old ticket, but the first logged in with the
    new credentials and stored that before the second could drop anything. The second keeps it."""
    world = World()
    ok(world.run(world.creds()))
    world.llu.password = "new"
    key = account_key(USER)
    old = world.store.accounts[key]
    ok(world.run(world.creds("new")))  # the first run
    fresh = world.store.accounts[key]
    assert fresh.creds_tag != old.creds_tag and fresh.ticket is not None

    class StaleFirstLoad(MemoryStateStore):
        """Hands out the state as it was before the first run's login, once (the second run's read)."""

        stale = True

        def load(self, key: str) -> StoredState:
            state = super().load(key)
            if self.stale:
                self.stale = False
                return dataclasses.replace(state, account=old)
            return state

    world.store = StaleFirstLoad(accounts=dict(world.store.accounts), targets=dict(world.store.targets))
    ok(world.run(world.creds("new")))  # the second run
    assert world.llu.logins == 2 and world.store.accounts[key].ticket == fresh.ticket
