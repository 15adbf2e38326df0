"""When hosted accounts run (linkup_sync.hosted.schedule): stable minute offsets, one partition per
interval each minute, and the seconds of a minute handed out evenly."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from linkup_sync.hosted.registry import account_id_for
from linkup_sync.hosted.schedule import (
    DEFAULT_INTERVAL,
    INTERVALS,
    account_partition,
    check_interval,
    offset,
    partitions_due,
    spread,
)

IDS = [account_id_for(f"follower{i}@example.invalid") for i in range(10_000)]
# 2026-12-04 10:15 UTC as an epoch minute: an ordinary hour, not minute 0 of the epoch.
SOME_MINUTE = 29_939_655


def test_every_interval_divides_the_hour_and_the_default_is_one_of_them() -> None:
    assert all(60 % interval == 0 for interval in INTERVALS)
    assert DEFAULT_INTERVAL in INTERVALS and len(set(INTERVALS)) == len(INTERVALS)


def test_offsets_are_pinned() -> None:
    """A change here moves every account to another minute (one missed or doubled run at the deploy)."""
    assert IDS[0] == "483241ebfb54"
    assert [offset(IDS[0], interval) for interval in INTERVALS] == [0, 1, 2, 1, 0, 5, 5, 5, 5, 5, 5, 5]
    assert all(offset(account_id, 5) == offset(account_id, 5) for account_id in IDS[:100])


@pytest.mark.parametrize("interval", INTERVALS)
def test_offsets_fill_the_minutes_of_each_interval_evenly(interval: int) -> None:
    counts = Counter(offset(account_id, interval) for account_id in IDS)
    assert set(counts) == set(range(interval))
    mean = len(IDS) / interval
    # A hash puts a binomial number of ids in each minute: its spread grows with the interval (for
    # 60 minutes one standard deviation is already 7.7% of the mean), so the bound is 5% or 4 standard
    # deviations, whichever is larger. A biased offset fails it by far.
    sd = math.sqrt(len(IDS) * (1 / interval) * (1 - 1 / interval))
    for minute, count in counts.items():
        assert abs(count - mean) <= max(0.05 * mean, 4 * sd), (interval, minute, count, mean)


def test_the_default_interval_gives_a_flat_load() -> None:
    counts = Counter(offset(account_id, DEFAULT_INTERVAL) for account_id in IDS)
    mean = len(IDS) / DEFAULT_INTERVAL
    assert max(counts.values()) <= 1.05 * mean and min(counts.values()) >= 0.95 * mean


@pytest.mark.parametrize("interval", INTERVALS)
def test_each_account_is_due_once_per_interval_over_an_hour(interval: int) -> None:
    accounts = IDS[:500]
    due_minutes: dict[str, list[int]] = {account_id: [] for account_id in accounts}
    for minute in range(SOME_MINUTE, SOME_MINUTE + 60):
        due = set(partitions_due(minute))
        assert len(due) == len(INTERVALS)  # one partition of every interval, each minute
        for account_id in accounts:
            if account_partition(account_id, interval) in due:
                due_minutes[account_id].append(minute)
    for minutes in due_minutes.values():
        assert len(minutes) == 60 // interval
        assert all(b - a == interval for a, b in itertools.pairwise(minutes))
        assert minutes[0] - SOME_MINUTE < interval


def test_partitions_due_names_one_partition_per_interval() -> None:
    assert partitions_due(SOME_MINUTE) == [f"due#{i}#{SOME_MINUTE % i}" for i in INTERVALS]
    assert account_partition(IDS[0], 5) == f"due#5#{offset(IDS[0], 5)}"


@pytest.mark.parametrize("count", [1, 2, 7, 59, 60, 61, 119, 1000, 2003])
def test_spread_hands_out_the_seconds_evenly(count: int) -> None:
    delays = [delay for _, delay in spread(IDS[:count])]
    assert len(delays) == count and delays[0] == 0 and max(delays) <= 59
    per_second = Counter(delays)
    counts = [per_second.get(second, 0) for second in range(60)]
    assert max(counts) - min(counts) <= 1


def test_spread_is_deterministic_and_ignores_order_and_repeats() -> None:
    ids = IDS[:300]
    shuffled = ids[::-1] + ids[:50]
    random.Random(7).shuffle(shuffled)
    assert spread(ids) == spread(shuffled)
    assert sorted(account_id for account_id, _ in spread(ids)) == sorted(ids)


def test_an_account_keeps_its_place_when_others_join() -> None:
    """The order is by digest: with one more account due, the others keep their rank."""
    before = [account_id for account_id, _ in spread(IDS[:100])]
    after = [account_id for account_id, _ in spread(IDS[:101])]
    after.remove(IDS[100])
    assert after == before


def test_spread_of_nothing_and_other_windows() -> None:
    assert spread([]) == []
    delays = [delay for _, delay in spread(IDS[:90], seconds=30)]
    assert max(delays) <= 29 and max(Counter(delays).values()) - min(Counter(delays).values()) <= 1


@pytest.mark.parametrize(("given", "expected"), [(5, 5), ("5", 5), (" 10 ", 10), (1, 1), ("60", 60)])
def test_check_interval_accepts_the_listed_minutes(given: object, expected: int) -> None:
    assert check_interval(given) == expected


@pytest.mark.parametrize("given", [7, "7", 0, -5, "-5", "5.0", 5.0, True, None, "", "five", [5], 120])
def test_check_interval_refuses_anything_else_and_names_the_choices(given: object) -> None:
    with pytest.raises(ValueError, match="SYNC_INTERVAL_MINUTES must be one of") as caught:
        check_interval(given)
    message = str(caught.value)
    assert "1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60" in message and "default 5" in message
