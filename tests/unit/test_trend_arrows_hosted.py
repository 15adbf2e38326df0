"""Issue 24 in the hosted stack: TREND_ARROWS is one of an account's own settings (how the arrows look
in the person's Nightscout), checked when the account is added and used by the worker's runs."""

from __future__ import annotations

from linkup_sync.hosted.registry import ACCOUNT_SETTING_KEYS
from tests.support.moto_hosted import HostedAws
from tests.unit.test_hosted_accounts import flat, problems_of
from tests.unit.test_hosted_worker import FakeRuns, add, make_worker, message
from tests.unit.test_hosted_worker import aws as aws  # the fixtures, under their own names
from tests.unit.test_hosted_worker import runs as runs


def test_an_account_may_choose_libre_and_a_wrong_value_is_named_not_echoed() -> None:
    from linkup_sync.hosted.accounts import check_account

    assert "TREND_ARROWS" in ACCOUNT_SETTING_KEYS
    assert check_account(flat(TREND_ARROWS="libre")).settings == {"TREND_ARROWS": "libre"}
    (problem,) = problems_of(flat(TREND_ARROWS="doubles-please"))
    assert "TREND_ARROWS" in problem and "doubles-please" not in problem and "(the value given)" in problem


def test_the_worker_runs_each_account_with_its_own_arrows(aws: HostedAws, runs: FakeRuns) -> None:
    libre = add(aws, 1, TREND_ARROWS="libre")
    plain = add(aws, 2)
    make_worker(aws).handle([message(libre), message(plain)])
    (mine,), (theirs,) = runs.deps[libre.id], runs.deps[plain.id]
    assert (mine.settings.trend_arrows, theirs.settings.trend_arrows) == ("libre", "derived")
