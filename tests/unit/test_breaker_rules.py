"""The circuit breakers as pure functions over the account state (breakers.py, issue 25).

test_breakers.py drives every breaker through whole runs; these pin the decisions themselves: the same
account, `now` and jitter always give the same answer, and no store or clock is needed to ask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from linkup_sync import errors
from linkup_sync.breakers import (
    ACTION_RETRY_S,
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    LOCKOUT_MARGIN_S,
    RETRY_AFTER_CAP_S,
    VERSION_RETRY_S,
    Changes,
    after_answer,
    after_failure,
    after_login,
    login_blocked,
    run_blocked,
)
from linkup_sync.model import Ticket
from linkup_sync.state.model import AccountState

NOW = 1_800_000_000
SECRET_VERSION = "v1"
CLEAR = AccountState()


def failure(
    exc: errors.LinkUpError,
    *,
    secret_version: str = SECRET_VERSION,
    version_auto: bool = False,
    jitter: Callable[[], float] = lambda: 0.5,  # the middle of the jitter range: the base pause itself
) -> Changes:
    return after_failure(
        exc, CLEAR, now=NOW, secret_version=secret_version, tag="tag1", version_auto=version_auto, jitter=jitter
    )


def test_a_clear_account_blocks_nothing() -> None:
    assert run_blocked(CLEAR, "4.16.0", NOW) is None
    assert login_blocked(CLEAR, secret_version="v1", tag="tag1", now=NOW) is None


def test_the_back_off_holds_until_its_time_and_names_its_reason() -> None:
    account = replace(CLEAR, backoff_until=NOW + 100, backoff_reason="rate_limited")
    skip = run_blocked(account, "4.16.0", NOW + 99)
    assert skip is not None and skip.reason == "rate_limited" and not skip.needs_person
    assert "next try is in 1 s" in skip.message
    assert run_blocked(account, "4.16.0", NOW + 100) is None


def test_a_refused_version_holds_for_that_version_only_and_until_its_retry() -> None:
    account = replace(CLEAR, rejected_version="4.16.0", version_retry_at=NOW + VERSION_RETRY_S)
    skip = run_blocked(account, "4.16.0", NOW)
    assert skip is not None and skip.reason == "version" and skip.needs_person
    assert run_blocked(account, "4.17.0", NOW) is None  # a changed LINK_UP_VERSION ends it at once
    assert run_blocked(account, "4.16.0", NOW + VERSION_RETRY_S) is None


def test_a_refused_password_blocks_the_same_secret_version_and_credentials_only() -> None:
    account = replace(CLEAR, bad_credentials_version="v1", bad_credentials_tag="tag1")
    skip = login_blocked(account, secret_version="v1", tag="tag1", now=NOW)
    assert skip is not None and skip.reason == "bad_credentials" and skip.needs_person
    assert login_blocked(account, secret_version="v2", tag="tag1", now=NOW) is None  # the secret changed
    assert login_blocked(account, secret_version="v1", tag="tag2", now=NOW) is None  # other credentials
    untagged = replace(account, bad_credentials_tag=None)  # recorded before fingerprints: the whole version
    assert login_blocked(untagged, secret_version="v1", tag="tag2", now=NOW) is not None


@pytest.mark.parametrize(
    ("reason", "skipped", "needs_person"),
    [("locked", "locked", False), ("action_required:tou", "action_required", True)],
)
def test_a_login_block_holds_until_its_time(reason: str, skipped: str, needs_person: bool) -> None:
    account = replace(CLEAR, login_not_before=NOW + 60, login_block_reason=reason)
    skip = login_blocked(account, secret_version="v1", tag="tag1", now=NOW + 59)
    assert skip is not None and (skip.reason, skip.needs_person) == (skipped, needs_person)
    assert login_blocked(account, secret_version="v1", tag="tag1", now=NOW + 60) is None


def test_what_each_failure_stores() -> None:
    assert failure(errors.LinkUpBadCredentials()) == {
        "ticket": None,
        "bad_credentials_version": "v1",
        "bad_credentials_tag": "tag1",
    }
    assert failure(errors.LinkUpBadCredentials(), secret_version="")["bad_credentials_version"] == "unknown"
    assert failure(errors.LinkUpLocked(300)) == {
        "login_not_before": NOW + 300 + LOCKOUT_MARGIN_S,
        "login_block_reason": "locked",
    }
    assert failure(errors.LinkUpActionRequired("tou")) == {
        "ticket": None,
        "login_not_before": NOW + ACTION_RETRY_S,
        "login_block_reason": "action_required:tou",
    }
    pinned = errors.LinkUpVersionRejected("4.17.0", "4.16.0")
    assert failure(pinned) == {"rejected_version": "4.16.0", "version_retry_at": NOW + VERSION_RETRY_S}
    assert failure(pinned, version_auto=True) == {"version": "4.17.0"}  # auto: the next run adopts it
    retired = errors.LinkUpVersionRejected("5.0.0", "4.16.0")
    assert failure(retired, version_auto=True) == {"rejected_version": "4.16.0", "version_retry_at": NOW + 3600}
    assert failure(errors.LinkUpUnauthorized()) == {}  # no breaker: the ticket is retried once in the run


def test_the_back_off_doubles_with_jitter_up_to_its_cap() -> None:
    account = CLEAR
    delays = []
    for _ in range(6):
        changes = after_failure(
            errors.LinkUpServerError(503),
            account,
            now=NOW,
            secret_version="v1",
            tag="t",
            version_auto=False,
            jitter=lambda: 1.0,
        )
        delays.append(int(changes["backoff_until"]) - NOW)
        assert changes["backoff_reason"] == "server_error"
        account = replace(account, **changes)
    assert delays == [144, 288, 576, 1152, BACKOFF_CAP_S, BACKOFF_CAP_S]  # 120 s x 2^n x 1.2, at most 30 min
    assert account.backoff_failures == 6
    low = failure(errors.LinkUpTimeout(), jitter=lambda: 0.0)
    assert low["backoff_until"] == NOW + int(BACKOFF_BASE_S * 0.8)


def test_a_retry_after_is_honoured_up_to_a_day() -> None:
    assert failure(errors.LinkUpRateLimited(900))["backoff_until"] == NOW + 900
    assert failure(errors.LinkUpRateLimited(10 * 24 * 3600))["backoff_until"] == NOW + RETRY_AFTER_CAP_S
    without = failure(errors.LinkUpRateLimited(None))
    assert without["backoff_until"] == NOW + BACKOFF_BASE_S  # the jitter of 0.5 gives the base pause
    # only a rate limit carries a Retry-After: a blocked edge backs off by the doubling pause
    assert failure(errors.LinkUpBlocked(403))["backoff_until"] == NOW + BACKOFF_BASE_S


def test_a_login_and_an_answer_clear_their_breakers() -> None:
    ticket = Ticket(token="t", expires=NOW + 180 * 86400, user_id="u", account_id="a", region="us")
    blocked = replace(
        CLEAR, bad_credentials_version="v0", bad_credentials_tag="x", login_not_before=NOW, login_block_reason="locked"
    )
    after = replace(blocked, **after_login(ticket, tag="tag1"))
    assert (after.ticket, after.region, after.creds_tag) == (ticket, "us", "tag1")
    assert login_blocked(after, secret_version="v0", tag="x", now=NOW - 1) is None
    assert after_answer(CLEAR) == {}  # nothing to clear: no write
    backed_off = replace(CLEAR, backoff_until=NOW, backoff_failures=3, rejected_version="4.16.0")
    cleared = replace(backed_off, **after_answer(backed_off))
    assert cleared == CLEAR
