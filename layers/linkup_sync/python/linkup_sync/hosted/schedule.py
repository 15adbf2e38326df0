"""When each hosted account runs: once per interval, at a minute derived from its id.

An account with interval I runs in the minutes m where m mod I equals its offset, so the accounts of
one interval fall evenly into its I minutes. Each (interval, offset) pair is one partition of the
state table ("due#5#3") holding the ids due in it: the dispatcher reads the few partitions of the
current minute instead of scanning the registry. Within the minute, the due accounts are spread over
its 60 seconds with SQS delays, so LibreLink Up sees a flat rate instead of a burst at :00.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# Every interval divides 60, so an hour always holds a whole number of runs of every account.
INTERVALS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
DEFAULT_INTERVAL = 5
DUE_PREFIX = "due#"


def _digest(purpose: str, account_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{purpose}:{account_id}".encode()).digest()[:8], "big")


def check_interval(minutes: object) -> int:
    """The interval as an int, or ValueError naming the values allowed."""
    if isinstance(minutes, bool) or not isinstance(minutes, (int, str)) or not str(minutes).strip().isdigit():
        raise ValueError(_interval_problem(minutes))
    value = int(str(minutes).strip())
    if value not in INTERVALS:
        raise ValueError(_interval_problem(minutes))
    return value


def _interval_problem(minutes: object) -> str:
    allowed = ", ".join(str(i) for i in INTERVALS)
    return f"SYNC_INTERVAL_MINUTES must be one of {allowed} (minutes; default {DEFAULT_INTERVAL}), not '{minutes}'."


def offset(account_id: str, interval: int) -> int:
    """The account's minute within its interval: stable, and uniform over the accounts."""
    return _digest("slot", account_id) % interval


def due_partition(interval: int, minute_offset: int) -> str:
    return f"{DUE_PREFIX}{interval}#{minute_offset}"


def account_partition(account_id: str, interval: int) -> str:
    """The due partition that lists this account."""
    return due_partition(interval, offset(account_id, interval))


def partitions_due(epoch_minute: int) -> list[str]:
    """The partitions whose accounts run in this minute: one per interval."""
    return [due_partition(interval, epoch_minute % interval) for interval in INTERVALS]


def spread(account_ids: Iterable[str], seconds: int = 60) -> list[tuple[str, int]]:
    """(id, delay in seconds) for the accounts due this minute, evenly over `seconds`.

    The order is fixed by each id's digest, so an account keeps roughly its second from run to run,
    while the rate stays flat however many accounts the minute holds.
    """
    ordered = sorted(set(account_ids), key=lambda account_id: (_digest("rank", account_id), account_id))
    count = len(ordered)
    return [(account_id, i * seconds // count) for i, account_id in enumerate(ordered)]
