"""The circuit breakers that protect the LibreLink Up account, as pure functions over its stored state.

A breaker is a field of the account item (state/model.py: AccountState), so it holds across cold starts
and concurrent runs. These functions only decide: whether a run may contact LibreLink Up or log in now
(a Skipped, or None), and what a failure or a success changes in the account (the changes, applied and
stored by the sync service). No store, no clock, no randomness inside: `now` and the jitter are
arguments. Every breaker ends by time or by the change that fixes it (docs/alerts.md, "Circuit breakers").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpError,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpRateLimited,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
)
from .model import Ticket
from .report import Skipped
from .state.model import AccountState

# What a decision changes in the account item: AccountState field -> new value.
Changes = dict[str, Any]

LOCKOUT_MARGIN_S = 60  # wait a little longer than LibreLink Up's own lockout
ACTION_RETRY_S = 3600  # after "the person must act": try logging in again at most hourly
VERSION_RETRY_S = 3600  # a refused pinned version (or a 5.x minimum): ask LibreLink Up again at most hourly
BACKOFF_BASE_S = 120
BACKOFF_CAP_S = 30 * 60
RETRY_AFTER_CAP_S = 24 * 3600  # a Retry-After is honoured, but never for more than a day

# Failures of LibreLink Up's edge or servers: the next runs skip LibreLink Up for a growing while.
BACKOFF_ERRORS = (
    LinkUpRateLimited,
    LinkUpBlocked,
    LinkUpMaintenance,
    LinkUpServerError,
    LinkUpTimeout,
    LinkUpVersionContradicted,  # a 920 naming no minimum, or one already met: a fault, not a refusal
)


# --- may this run go ahead? -----------------------------------------------------------------------------


def run_blocked(account: AccountState, version: str, now: float) -> Skipped | None:
    """Whether a stored breaker keeps this run from contacting LibreLink Up at all."""
    if account.backoff_until and now < account.backoff_until:
        wait = int(account.backoff_until - now)
        return Skipped(
            account.backoff_reason or "backoff",
            f"LibreLink Up asked us to slow down ({account.backoff_reason}); this run skips it, "
            f"the next try is in {wait} s.",
        )
    retry_at = account.version_retry_at
    if account.rejected_version == version and retry_at and now < retry_at:
        # Bounded: a changed LINK_UP_VERSION (or an adopted one) ends it at once, else it is asked again hourly.
        return Skipped(
            "version",
            f"LibreLink Up refused app version {account.rejected_version}; it is asked again in "
            f"{int(retry_at - now)} s, or at once when LINK_UP_VERSION is changed (or set to 'auto').",
            needs_person=True,
        )
    return None


def login_blocked(account: AccountState, *, secret_version: str, tag: str, now: float) -> Skipped | None:
    """Whether a stored breaker forbids a login with these credentials (secret version, fingerprint) now."""
    if (
        account.bad_credentials_version is not None
        and account.bad_credentials_version == secret_version
        # a block recorded before fingerprints existed holds for its whole secret version
        and account.bad_credentials_tag in (None, tag)
    ):
        return Skipped(
            "bad_credentials",
            LinkUpBadCredentials().message,
            needs_person=True,
        )
    if account.login_not_before and now < account.login_not_before:
        reason = account.login_block_reason or "locked"
        wait = int(account.login_not_before - now)
        if reason == "locked":
            message = f"The LibreLink Up account is locked; no login is tried for another {wait} s."
        else:
            message = (
                f"LibreLink Up is waiting for the person to act ({reason}); the next login is tried "
                f"in {wait} s. Open the LibreLink Up app and follow its request."
            )
        return Skipped(reason if reason == "locked" else "action_required", message, needs_person=reason != "locked")
    return None


# --- what an answer changes ------------------------------------------------------------------------------


def after_failure(
    exc: LinkUpError,
    account: AccountState,
    *,
    now: int,
    secret_version: str,
    tag: str,
    version_auto: bool,
    jitter: Callable[[], float],
) -> Changes:
    """What this failure means for the next runs (empty: it sets no breaker)."""
    if isinstance(exc, LinkUpBadCredentials):
        return {"ticket": None, "bad_credentials_version": secret_version or "unknown", "bad_credentials_tag": tag}
    if isinstance(exc, LinkUpLocked):
        return {"login_not_before": now + exc.lockout_seconds + LOCKOUT_MARGIN_S, "login_block_reason": "locked"}
    if isinstance(exc, LinkUpActionRequired):
        return {
            "ticket": None,
            "login_not_before": now + ACTION_RETRY_S,
            "login_block_reason": f"action_required:{exc.step}",
        }
    if isinstance(exc, LinkUpVersionRejected):
        return _after_version_rejected(exc, now=now, version_auto=version_auto)
    if isinstance(exc, BACKOFF_ERRORS):
        return _backoff(exc, account, now=now, jitter=jitter)
    return {}


def adoptable_minimum(exc: LinkUpVersionRejected, *, version_auto: bool) -> str | None:
    """The minimum version LINK_UP_VERSION=auto takes on from this refusal: a 4.x one (a 5.x minimum means
    the API is retired, and a pinned version is never changed)."""
    minimum = exc.minimum_version
    return minimum if version_auto and minimum and minimum.startswith("4.") else None


def _after_version_rejected(exc: LinkUpVersionRejected, *, now: int, version_auto: bool) -> Changes:
    minimum = adoptable_minimum(exc, version_auto=version_auto)
    if minimum is not None:
        # auto, but not adopted in this run (a refused login, or a second raise in one run): the next
        # run starts with it, so this needs no person either.
        return {"version": minimum}
    return {"rejected_version": exc.sent_version, "version_retry_at": now + VERSION_RETRY_S}


def _backoff(exc: LinkUpError, account: AccountState, *, now: int, jitter: Callable[[], float]) -> Changes:
    """A growing pause (doubling from 2 minutes, jittered, capped at 30), or the server's Retry-After
    (capped at a day)."""
    failures = account.backoff_failures + 1
    retry_after = exc.retry_after if isinstance(exc, LinkUpRateLimited) else None
    if retry_after:
        delay = min(float(retry_after), RETRY_AFTER_CAP_S)
    else:
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1) * (0.8 + 0.4 * jitter()))
    return {"backoff_until": int(now + delay), "backoff_failures": failures, "backoff_reason": exc.reason}


def after_login(ticket: Ticket, *, tag: str) -> Changes:
    """A successful login answers the credential and lock breakers, and ties the ticket to the credentials."""
    return {
        "ticket": ticket,
        "region": ticket.region,
        "creds_tag": tag,
        "bad_credentials_version": None,
        "bad_credentials_tag": None,
        "login_not_before": None,
        "login_block_reason": None,
    }


def after_answer(account: AccountState) -> Changes:
    """LibreLink Up answered again: the back-off and a refused version are over (empty: nothing was set)."""
    if account.backoff_failures or account.backoff_until or account.rejected_version or account.version_retry_at:
        return {
            "backoff_until": None,
            "backoff_failures": 0,
            "backoff_reason": None,
            "rejected_version": None,
            "version_retry_at": None,
        }
    return {}
