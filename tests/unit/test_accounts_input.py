"""What `linkup-sync accounts add` accepts, and the schedule as the accounts commands print it; no AWS.

The round trips through the table and KMS are in tests/integration/test_cli_accounts.py.
"""

from __future__ import annotations

import pytest

from linkup_sync.addresses import SiteAddresses
from linkup_sync.errors import ConfigError
from linkup_sync.hosted.accounts import check_account
from linkup_sync.hosted.registry import account_id_for
from linkup_sync.hosted.schedule import INTERVALS, account_partition, partitions_due
from linkup_sync_cli.accounts_view import schedule_text

EMAIL = "fiona.follower@example.invalid"
SITE = {"NIGHTSCOUT_URL": "https://fiona-ns.example.net", "NIGHTSCOUT_API_TOKEN": "token-of-fiona-0123456789"}


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        check_account(raw)
    return err.value.problems


def test_a_misspelt_setting_of_the_account_is_named_as_that_setting() -> None:
    found = problems(
        {
            "LINK_UP_USERNAME": EMAIL,
            "LINK_UP_PASSWORD": "pw",
            **SITE,
            "LINK_UP_REGOIN": "EU",
            "SYNC_INTERVAL_MINUTE": 10,
        }
    )
    assert found == [
        "'LINK_UP_REGOIN' in the account's JSON is not a key linkup-sync knows. Did you mean LINK_UP_REGION?",
        "'SYNC_INTERVAL_MINUTE' in the account's JSON is not a key linkup-sync knows. Did you mean "
        "SYNC_INTERVAL_MINUTES?",
    ]


def test_a_key_close_to_none_lists_every_key_an_account_takes() -> None:
    (found,) = problems({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": "pw", **SITE, "COLOUR": "blue"})
    assert found.startswith("'COLOUR' in the account's JSON is not a key linkup-sync knows. Allowed: ")
    for key in ("LINK_UP_REGION", "LINK_UP_VERSION", "SYNC_INTERVAL_MINUTES", "TARGETS", "NIGHTSCOUT_API_V3"):
        assert key in found


def test_a_misspelt_secret_key_is_not_also_called_missing() -> None:
    assert problems({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASWORD": "pw", **SITE}) == [
        "'LINK_UP_PASWORD' in the account's JSON is not a key linkup-sync knows. Did you mean LINK_UP_PASSWORD?"
    ]


@pytest.mark.parametrize("form", ["flat", "targets"])
def test_a_plain_http_address_is_reported_while_the_password_is_missing_too(form: str) -> None:
    site = {**SITE, "NIGHTSCOUT_URL": "http://fiona-ns.example.net"}
    raw: dict[str, object] = {"LINK_UP_USERNAME": EMAIL, **site}
    if form == "targets":
        raw = {"LINK_UP_USERNAME": EMAIL, "TARGETS": [{"LINK_UP_CONNECTION": "8b6e4d2c-1a3f", **site}]}
    found = problems(raw)
    assert "LINK_UP_PASSWORD is missing from the account's JSON." in found
    (http,) = [p for p in found if p.startswith("NIGHTSCOUT_URL starts with http://")]
    assert http.endswith(" (TARGETS entry 1)") == (form == "targets")


def test_a_plain_http_address_on_this_machine_is_allowed_only_for_local_tests() -> None:
    """Issue 21: only with LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT=true (the tests' simulators)."""
    site = {**SITE, "NIGHTSCOUT_URL": "http://127.0.0.1:1337"}
    raw: dict[str, object] = {"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": "pw", **site}
    assert check_account(raw, addresses=SiteAddresses(allow_loopback=True)).people == 1
    assert [p for p in problems(raw) if "loopback" in p]


@pytest.mark.parametrize("interval", INTERVALS)
def test_the_printed_minutes_are_those_the_dispatcher_sends_the_account_in(interval: int) -> None:
    account_id = account_id_for(EMAIL)
    text = schedule_text(account_id, interval)
    hour = 29_933_340  # an epoch minute at :00 (2026-11-30 00:00 UTC)
    due = [m for m in range(60) if account_partition(account_id, interval) in partitions_due(hour + m)]
    assert len(due) == 60 // interval
    if interval == 1:
        assert text == "runs every minute"
    elif interval == 60:
        assert text == f"runs once an hour, at :{due[0]:02d} (UTC)"
    else:
        shown = ", ".join(f":{m:02d}" for m in due[:4])
        assert (
            text == f"runs every {interval} min, at {shown}" + (", …" if len(due) > 4 else "") + " past each hour (UTC)"
        )
