"""Issue 13, the command line's side: typo-proof credentials, exit codes cron can trust, and messages
that point at the right fix. Against the LibreLink Up simulator and the Nightscout stand-in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from linkup_sync import __version__
from linkup_sync.state.file import FileStateStore
from linkup_sync.state.model import account_key
from linkup_sync_cli import main as cli
from linkup_sync_cli.sync_command import EXIT_FAILED, EXIT_NEEDS_PERSON
from tests.integration.harness import EMAIL
from tests.integration.test_cli import Sim, healthy, sim

__all__ = ["sim"]


def test_upper_case_patient_id_is_the_same_person(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    patient = next(iter(sim.llu.patients.values()))
    code, out, err = sim.run(capsys, "sync", "--once", LINK_UP_CONNECTION=patient.id.upper())
    assert code == 0 and out.startswith("uploaded "), out + err


def test_follower_email_that_cannot_be_an_address_is_refused_before_any_login(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(sim)
    for username in ("fiona follower@example.invalid", "fiona.follower.example.invalid", "fiona@"):
        code, _, err = sim.run(capsys, "sync", "--once", LINK_UP_USERNAME=username)
        assert code == EXIT_NEEDS_PERSON and "LINK_UP_USERNAME" in err and "not an e-mail address" in err
    assert sim.logins() == 0  # no login spent, so no bad-password breaker either
    assert (
        not sim.state.exists()
        or FileStateStore(sim.state).load(account_key(EMAIL)).account.bad_credentials_version is None
    )


def test_terms_say_when_the_next_try_is_and_exit_2_on_every_run(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.llu.force_steps(EMAIL, ["tou"])
    code, _, err = sim.run(capsys, "sync", "--once")
    next_try = datetime.fromtimestamp(sim.clock() + 3600, tz=UTC).strftime("%H:%M UTC")
    assert code == 2 and f"the next try is at {next_try}" in err
    assert "resumes by itself on its next run" not in err  # the old text, which was wrong by an hour
    assert "--reset-login" in err
    sim.clock.advance(300)
    code, out, _ = sim.run(capsys, "sync", "--once", "--quiet")
    assert code == 2 and "the next login is tried in" in out and sim.logins() == 1


def test_version_refused_exits_2_on_every_run(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.llu.set_min_version("4.17.0")
    pinned = {"LINK_UP_VERSION": "4.16.0"}  # the default, auto, would adopt 4.17.0 (issue #10)
    code, _, err = sim.run(capsys, "sync", "--once", **pinned)
    assert code == 2 and "samconfig.toml" in err
    sim.clock.advance(300)
    code, out, _ = sim.run(capsys, "sync", "--once", **pinned)
    assert code == 2 and out.startswith("skipped: LibreLink Up refused app version 4.16.0")


def test_passing_problems_still_exit_1(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.ns.set_unreachable(True)
    code, _, err = sim.run(capsys, "sync", "--once")
    assert code == EXIT_FAILED and "Nightscout could not be reached" in err


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"], env={})
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"linkup-sync {__version__}"


def test_doctor_tells_a_token_without_upload_permission_from_a_wrong_token(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(sim)
    sim.ns.add_role("create-only", ["api:entries:create"])
    weak = sim.ns.add_subject("weak", ["create-only"])
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_TOKEN=weak)
    assert code == 1
    assert "✘ Nightscout token: Nightscout knows the token, but its role may not upload readings" in out
    assert "Missing: api:entries:read" in out and "Nightscout answered 401" not in out
    wrong = "bridge-" + "0" * 16  # the form of a token, but unknown to the site
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_TOKEN=wrong)
    assert (
        code == 1 and "✘ Nightscout token: Nightscout answered 401 Unauthorized" in out and "knows the token" not in out
    )


def test_home_server_nightscout_over_http_needs_the_opt_in_and_warns(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(sim)
    url = "http://nightscout:1337"  # docker-compose's form
    code, _, err = sim.run(capsys, "sync", "--once", "--dry-run", NIGHTSCOUT_URL=url)
    assert code == 2 and "NIGHTSCOUT_ALLOW_HTTP=true" in err and "not a web address" not in err
    code, out, err = sim.run(capsys, "sync", "--once", "--dry-run", NIGHTSCOUT_URL=url, NIGHTSCOUT_ALLOW_HTTP="true")
    assert code == 0 and "would upload" in out
    assert "warning:" in err and "travels unencrypted" in err and "hash" in err
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_URL=url, NIGHTSCOUT_ALLOW_HTTP="true")
    assert "✔ Nightscout URL: http://nightscout:1337" in out and "travels unencrypted" in out
    # a public host stays refused even with the opt-in: only the local network may be plain http
    code, _, err = sim.run(
        capsys, "sync", "--once", "--dry-run", NIGHTSCOUT_URL="http://ns.example.com", NIGHTSCOUT_ALLOW_HTTP="true"
    )
    assert code == 2 and "unencrypted over the internet" in err


def test_command_line_output_stays_plain_after_the_lambda_logger_was_set_up(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Lambda set-up gives the package logger a JSON handler; in the same process (tests, a notebook)
    the command line must still print only its own lines."""
    from linkup_sync.observability import logger

    logger()
    healthy(sim)
    sim.llu.set_min_version("5.0.0")
    sim.run(capsys, "sync", "--once")
    sim.clock.advance(300)
    _, out, err = sim.run(capsys, "sync", "--once")
    assert out.startswith("skipped: ") and '{"level"' not in out + err
