"""Issue 23, "The second run-through": the command line's findings 1, 2, 4, 5, 6 and 9, each against the
simulators (and moto for the AWS options). Every test here failed before its change.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from linkup_sync_cli import main as cli
from tests.integration.harness import EMAIL, PASSWORD, Harness
from tests.integration.test_cli import Sim, healthy, sim, unwrap

__all__ = ["sim"]  # the fixture, shared with test_cli.py

SECOND_PATIENT = "6a1d9e0b-3c4f-4e2a-8b7d-5f9e1c0a2b44"


def _aws_cli(h: Harness) -> dict[str, str]:
    return {"LINK_UP_API_URL": h.env["LINK_UP_API_URL"], "LINK_UP_REGION": "EU", "NIGHTSCOUT_SENSOR_START": "false"}


def _deployed(h: Harness) -> Harness:
    """The stack deployed with one patient, the secret read afresh by the next command."""
    h.llu.add_patient(EMAIL)
    h.provision()
    _clear_secret_cache()
    return h


def _clear_secret_cache() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]


# --- finding 1: a table (or secret) that is not there needs a person: exit 2, naming it and the region ----


def test_sync_with_a_table_that_does_not_exist_names_it_and_the_region_and_exits_2(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = _deployed(harness)
    code = cli.main(
        ["sync", "--once", "--secret-id", h.secret_arn, "--table", "no-such-table"], env=_aws_cli(h), clock=h.clock
    )
    err = unwrap(capsys.readouterr().err)
    assert code == 2, err  # cron must not retry this forever as a passing failure
    assert "There is no DynamoDB table no-such-table in the AWS region us-east-1" in err
    assert "StateTableName" in err and "Traceback" not in err

    code = cli.main(
        ["sync", "--once", "--json", "--secret-id", h.secret_arn, "--table", "no-such-table"],
        env=_aws_cli(h),
        clock=h.clock,
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 2 and summary["needs_person"] is True and "no-such-table" in summary["message"]


def test_doctor_with_a_table_that_does_not_exist_fails_the_check_and_exits_2(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = _deployed(harness)
    code = cli.main(["doctor", "--secret-id", h.secret_arn, "--table", "no-such-table"], env=_aws_cli(h), clock=h.clock)
    out = unwrap(capsys.readouterr().out)
    assert code == 2, out
    assert "✘ State table: There is no DynamoDB table no-such-table in the AWS region us-east-1" in out


def test_a_secret_that_does_not_exist_is_named_with_its_region_and_differs_from_one_without_a_value(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Findings 1 and 5: "does not exist (here)" and "has no value yet" are different fixes."""
    h = _deployed(harness)
    code = cli.main(["sync", "--once", "--secret-id", "no-such-secret"], env=_aws_cli(h), clock=h.clock)
    missing = unwrap(capsys.readouterr().err)
    assert code == 2
    assert "There is no secret no-such-secret in the AWS region us-east-1" in missing
    assert "no value yet" not in missing

    empty = boto3.client("secretsmanager").create_secret(Name="linkup-sync-empty")["ARN"]
    _clear_secret_cache()
    code = cli.main(["sync", "--once", "--secret-id", empty], env=_aws_cli(h), clock=h.clock)
    unset = unwrap(capsys.readouterr().err)
    assert code == 2
    assert "has no value yet" in unset and "There is no secret" not in unset


# --- finding 4: the region comes from the secret's ARN, for the table too -----------------------------


def test_the_secret_arn_names_the_region_for_the_table_too(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _deployed(harness)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert ":us-east-1:" in h.secret_arn
    aws = ["--secret-id", h.secret_arn, "--table", h.env["STATE_TABLE_NAME"]]
    code = cli.main(["sync", "--once", *aws], env=_aws_cli(h), clock=h.clock)
    captured = capsys.readouterr()
    assert "No AWS region is set" not in captured.err
    assert code == 0 and captured.out.startswith("uploaded "), captured.err


def test_a_secret_and_a_table_in_another_region_are_named_with_the_region_looked_in(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1, "the same for a secret or table in another region": they exist, in us-east-1; the shell's
    region is eu-west-1. The message names what was looked for and where, and a person must act (exit 2)."""
    h = _deployed(harness)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    name = h.secret_arn.split(":secret:")[1].rsplit("-", 1)[0]  # by its name: the region is the shell's
    code = cli.main(["sync", "--once", "--secret-id", name], env=_aws_cli(h), clock=h.clock)
    err = unwrap(capsys.readouterr().err)
    assert code == 2, err
    assert f"There is no secret {name} in the AWS region eu-west-1" in err

    table = h.env["STATE_TABLE_NAME"]
    env = {**_aws_cli(h), "LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD}
    env |= {"NIGHTSCOUT_URL": h.ns.base_url, "NIGHTSCOUT_API_TOKEN": h.ns_token}
    code = cli.main(["sync", "--once", "--table", table], env=env, clock=h.clock)
    err = unwrap(capsys.readouterr().err)
    assert code == 2, err
    assert f"There is no DynamoDB table {table} in the AWS region eu-west-1" in err


# --- finding 2: the dry run announces what the real run will upload --------------------------------


def test_dry_run_announces_what_the_real_run_uploads_when_nightscout_has_the_history(
    sim: Sim, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "sync", "--once")  # another installation filled Nightscout already
    assert code == 0 and out.startswith("uploaded ")
    sim.clock.advance(60)
    sim.state = tmp_path / "fresh" / "state.json"  # fresh state: this installation has uploaded nothing
    posts_before = sum(1 for r in sim.ns.requests if r.method == "POST")

    code, out, _ = sim.run(capsys, "sync", "--once", "--dry-run")
    assert code == 0
    announced = [line for line in out.splitlines() if line.startswith(("would upload", "nothing new"))]
    assert len(announced) == 1 and announced[0].startswith("would upload 1 reading;"), out
    assert sum(1 for r in sim.ns.requests if r.method == "POST") == posts_before  # a dry run only reads

    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith("uploaded 1 reading;"), out
    assert sim.ns.duplicates() == []


# --- finding 5: messages that send people the right way ---------------------------------------------


def test_environment_variables_are_not_called_the_secret(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, _out, err = sim.run(capsys, "sync", "--once", LINK_UP_USERNAME="not an address")
    assert code == 2
    assert "LINK_UP_USERNAME in the environment variables is not an e-mail address" in err
    assert "in the secret" not in err and "make secret" not in err


def test_an_unknown_key_is_not_called_incomplete() -> None:
    from linkup_sync.errors import SecretError
    from linkup_sync.secret_format import credentials_from_secret

    raw = {
        "LINK_UP_USERNAME": EMAIL,
        "LINK_UP_PASSWORD": PASSWORD,
        "NIGHTSCOUT_URL": "https://ns.example.org",
        "NIGHTSCOUT_API_TOKEN": "t" * 20,
        "NIGHTSCOUT_DEVICE": "x",
    }
    with pytest.raises(SecretError) as err:
        credentials_from_secret(raw, version="1", secret_id="s")
    assert "incomplete" not in err.value.message
    del raw["NIGHTSCOUT_DEVICE"], raw["NIGHTSCOUT_URL"]
    with pytest.raises(SecretError) as err:
        credentials_from_secret(raw, version="1", secret_id="s")
    assert "incomplete" in err.value.message  # something is missing: that is what incomplete means


def test_errors_in_a_targets_secret_do_not_suggest_make_secret() -> None:
    from linkup_sync.errors import SecretError
    from linkup_sync.secret_format import credentials_from_secret

    raw = {
        "LINK_UP_USERNAME": EMAIL,
        "LINK_UP_PASSWORD": PASSWORD,
        "TARGETS": [{"LINK_UP_CONNECTION": SECOND_PATIENT, "NIGHTSCOUT_URL": "https://a.example.org"}],
    }
    with pytest.raises(SecretError) as err:
        credentials_from_secret(raw, version="1", secret_id="s")
    assert "NIGHTSCOUT_API_TOKEN is missing from TARGETS entry 1" in err.value.message
    assert "make secret" not in err.value.message  # it writes the flat form: the other people would be lost
    assert "make setup" in err.value.message


def test_targets_with_one_person_failing_says_what_the_others_got(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown patientId in TARGETS: no "leave it empty" (an entry needs one), and the other person's
    upload is said, in words and in --json."""
    h = harness
    followed = h.llu.add_patient(EMAIL)
    h.provision()
    other = h.ns.base_url + "/"  # a second site entry for the same Nightscout, other person
    h.secret_targets(
        [
            {
                "LINK_UP_CONNECTION": followed.patient_id,
                "NIGHTSCOUT_URL": h.ns.base_url,
                "NIGHTSCOUT_API_TOKEN": h.ns_token,
            },
            {"LINK_UP_CONNECTION": SECOND_PATIENT, "NIGHTSCOUT_URL": other, "NIGHTSCOUT_API_TOKEN": h.ns_token},
        ]
    )
    _clear_secret_cache()
    aws = ["--secret-id", h.secret_arn, "--table", h.env["STATE_TABLE_NAME"]]
    code = cli.main(["sync", "--once", *aws], env=_aws_cli(h), clock=h.clock)
    captured = capsys.readouterr()
    err, out = unwrap(captured.err), captured.out
    assert code == 2
    assert "from LINK_UP_CONNECTION in TARGETS entry 2 of the secret" in err
    assert "leave it empty" not in err and "Set LINK_UP_CONNECTION in TARGETS entry 2" in err
    assert "uploaded " in out and "readings" in out  # the first person's readings are in, and said so

    h.tick(300)
    _clear_secret_cache()
    code = cli.main(["sync", "--once", "--json", *aws], env=_aws_cli(h), clock=h.clock)
    summary = json.loads(capsys.readouterr().out)
    assert code == 2 and summary["error"] == "patient_not_found"
    assert summary["uploaded"] >= 1
    assert [t.get("error") for t in summary["targets"]] == [None, "patient_not_found"]


# --- finding 6: a Nightscout 404 gets doctor's diagnosis ------------------------------------------


def test_sync_says_no_nightscout_at_this_address_for_a_404(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, _, err = sim.run(capsys, "sync", "--once", NIGHTSCOUT_URL=sim.ns.base_url + "/nightscout")
    assert code == 2
    assert "no Nightscout at this address (HTTP 404 for /api/v1/" in err
    assert "must be the address that shows the glucose chart in a browser" in err
    assert "Cannot POST" not in err and "Cannot GET" not in err


# --- finding 9: NIGHTSCOUT_DEVICE_NAME, as nightscout-librelink-up has it ---------------------------


def test_nightscout_device_name_is_the_entries_device(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, _out, err = sim.run(capsys, "sync", "--once", NIGHTSCOUT_DEVICE_NAME="nightscout-librelink-up")
    assert code == 0, err
    devices = {e.get("device") for e in sim.ns.sgv_entries()}
    assert devices == {"nightscout-librelink-up"}
