"""The command line's credentials have no version: the bad-password block is tied to the credentials
it was recorded for instead (issue 23 finding 3, issue 21), so a changed password lifts it at once.

Against the simulators with a local state file, like test_cli.py (whose fixture this uses).
"""

from __future__ import annotations

import pytest

from linkup_sync.state.file import FileStateStore
from linkup_sync.state.model import account_key
from tests.integration.harness import EMAIL
from tests.integration.test_cli import Sim, healthy, sim  # noqa: F401 - sim is the fixture

WRONG = "not the password"


def test_a_dry_run_with_a_wrong_password_does_not_block_the_right_one(
    sim: Sim,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    healthy(sim)
    code, _, err = sim.run(capsys, "sync", "--once", "--dry-run", LINK_UP_PASSWORD=WRONG)
    assert code == 2 and sim.logins() == 1 and "rejected" in err
    code, out, _ = sim.run(capsys, "sync", "--once", "--dry-run", LINK_UP_PASSWORD=WRONG)
    assert code == 2 and out.startswith("skipped:") and sim.logins() == 1  # the block holds for it
    # the real run with the right password: no --reset-login needed, one login, readings uploaded
    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith("uploaded") and sim.logins() == 2
    account = FileStateStore(sim.state).load(account_key(EMAIL)).account
    assert account.bad_credentials_version is None and account.ticket is not None


def test_a_wrong_password_after_a_good_one_is_tried_once_and_never_rides_on_the_ticket(
    sim: Sim,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and sim.logins() == 1
    graphs = len(sim.llu.served)
    for _ in range(3):
        sim.clock.advance(300)
        code, _, _ = sim.run(capsys, "sync", "--once", LINK_UP_PASSWORD=WRONG)
        assert code == 2
    assert sim.logins() == 2 and len(sim.llu.served) == graphs  # one refused login, no graph on the old ticket
    sim.clock.advance(300)
    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith("uploaded") and sim.logins() == 3
