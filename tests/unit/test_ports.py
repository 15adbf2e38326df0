"""The optional capabilities of ports.py (issue 25) match the adapters that have them, and only those.

They replaced getattr probes: if a protocol stopped matching its adapter, a capability would be lost
without an error (the v3 JWT no longer stored, so one token exchange per run; no announcement; a secret
never read afresh). So each one is held against the real classes, and against those that lack it.
"""

from __future__ import annotations

from linkup_sync.hosted.worker import HostedCredentials
from linkup_sync.nightscout.v1 import NightscoutV1
from linkup_sync.nightscout.v3 import NightscoutV3
from linkup_sync.ports import Announcer, HoldsJwt, RefreshableCredentials
from linkup_sync.runtime import StateJwtCache
from linkup_sync.secrets import SecretsManagerCredentials
from linkup_sync.upload import jwt_of
from linkup_sync_cli.adapters import CollectingSink, EnvCredentials, FixedCredentials
from tests.fakes import FakeNightscout

URL = "https://ns.example.org"


def test_the_v3_uploader_holds_a_jwt_and_announces() -> None:
    sink = NightscoutV3(base_url=URL, token="bridge-0123456789abcdef", jwt_cache=StateJwtCache("jwt", 2_000_000_000))
    assert isinstance(sink, HoldsJwt) and isinstance(sink, Announcer)
    assert jwt_of(sink) == ("jwt", 2_000_000_000)  # what the sync service stores back
    assert jwt_of(NightscoutV3(base_url=URL, token="bridge-0123456789abcdef")) == (None, None)  # no cache


def test_the_v1_uploader_announces_but_holds_no_jwt() -> None:
    sink = NightscoutV1(base_url=URL, token="a-long-enough-api-secret")
    assert isinstance(sink, Announcer) and not isinstance(sink, HoldsJwt)
    assert jwt_of(sink) == (None, None)


def test_the_dry_run_and_the_fake_neither_announce_nor_hold_a_jwt() -> None:
    for sink in (CollectingSink(), FakeNightscout()):
        assert not isinstance(sink, Announcer) and not isinstance(sink, HoldsJwt)
        assert jwt_of(sink) == (None, None)


def test_credentials_kept_between_runs_can_be_read_afresh() -> None:
    assert isinstance(SecretsManagerCredentials("linkup-sync/credentials"), RefreshableCredentials)
    assert issubclass(HostedCredentials, RefreshableCredentials)
    # the command line reads its credentials anew on every run: nothing to refresh
    assert not isinstance(EnvCredentials({}), RefreshableCredentials)
    assert not issubclass(FixedCredentials, RefreshableCredentials)
