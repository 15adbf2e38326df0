"""`linkup-sync setup` (`make setup`) against the sandbox: the LibreLink Up simulator, the Nightscout
stand-in and moto, with a recording stand-in for `sam` (tests/support/fake_sam.py) whose deploy makes the
stack in moto and whose `remote invoke` runs the real handler here.

The simulators run on the real clock: the handler runs in the stand-in's own process, which has no way
to share a virtual clock. Nothing is timed; the readings are simply "now".
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync import __version__
from linkup_sync_cli import main as cli
from linkup_sync_cli.setup_command import run_setup
from linkup_sync_cli.setup_deploy import load_answers
from tests.integration.harness import EMAIL, PASSWORD
from tests.support.fake_sam import install, recorded

ROOT = Path(__file__).resolve().parents[2]
ROLE = ["api:entries:create", "api:entries:read", "api:treatments:create", "api:treatments:read"]
CHECKOUT_FILES = ("template.yaml", "samconfig.toml", "events/scheduled.json")


@dataclass
class Sandbox:
    llu: LinkUpSimulator
    ns: NightscoutStandIn
    token: str
    checkout: Path
    sam: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    # moto lives for the whole session: every test deploys a stack of its own name
    stack: str = field(default_factory=lambda: f"linkup-sync-{uuid.uuid4().hex[:8]}")

    def answers(self, **extra: str) -> dict[str, str]:
        return {
            **self.env,
            "LINK_UP_USERNAME": EMAIL,
            "LINK_UP_PASSWORD": PASSWORD,
            "NIGHTSCOUT_URL": self.ns.base_url,
            "NIGHTSCOUT_API_TOKEN": self.token,
            "AlarmEmail": "parent@example.org",
            "STACK_NAME": self.stack,
            "AWS_REGION": "us-east-1",
            **extra,
        }

    def commands(self) -> list[list[str]]:
        return [entry["argv"] for entry in recorded(self.log)]

    def secret(self) -> dict[str, object]:
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        outputs = {
            o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=self.stack)["Stacks"][0]["Outputs"]
        }
        value = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
            SecretId=outputs["CredentialsSecretArn"]
        )
        result: dict[str, object] = json.loads(value["SecretString"])
        return result

    def assert_no_secret_in(self, text: str) -> None:
        for value in (PASSWORD, self.token):
            assert value not in text, "a password or token was shown"
        for entry in recorded(self.log):  # nor on a child's command line, nor in the environment setup gives it
            assert not any(value in " ".join(entry["argv"]) for value in (PASSWORD, self.token))
            if entry["argv"] != ["sam", "--version"]:  # make's own check of sam gets the person's exports as is
                assert not any(value in v for v in entry["env"].values() for value in (PASSWORD, self.token))


def _copy_checkout(target: Path, files: tuple[str, ...] | None = None) -> Path:
    if files is None:  # the whole checkout, as a fresh clone has it (tracked and new files, nothing ignored)
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        files = tuple(f for f in listed if (ROOT / f).is_file())
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture
def sandbox(aws_env: str, tmp_path: Path) -> Iterator[Sandbox]:
    llu = LinkUpSimulator(time.time).start()
    ns = NightscoutStandIn(time.time).start()
    try:
        llu.add_account(EMAIL, PASSWORD, home_region="eu")
        llu.add_patient(EMAIL, first_name="Pat", last_name="Example")
        ns.add_role("cgm-bridge", ROLE)
        token = ns.add_subject("bridge", ["cgm-bridge"])
        log = tmp_path / "sam-commands.jsonl"
        checkout = _copy_checkout(tmp_path / "checkout", CHECKOUT_FILES)
        box = Sandbox(llu, ns, token, checkout, install(tmp_path / "bin", log), log)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LINK_UP_", "NIGHTSCOUT_"))}
        box.env = {**base, "LINK_UP_API_URL": llu.url_template, "NIGHTSCOUT_SENSOR_START": "false"}
        yield box
    finally:
        llu.stop()
        ns.stop()


def _setup(box: Sandbox, capsys: pytest.CaptureFixture[str], env: dict[str, str], *args: str) -> tuple[int, str]:
    code = cli.main(["setup", "--checkout", str(box.checkout), "--sam", str(box.sam), *args], env=env)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _expected_deploy(box: Sandbox) -> list[str]:
    return [
        "sam", "deploy", "--stack-name", box.stack, "--region", "us-east-1", "--no-confirm-changeset",
        "--tags", f"linkup-sync:version={__version__}",
        "--parameter-overrides", "AlarmEmail=parent@example.org", f"LinkUpApiUrl={box.llu.url_template}",
        "NightscoutSensorStart=false",
    ]  # fmt: skip


def _invoke(box: Sandbox) -> list[str]:
    return [
        "sam", "remote", "invoke", "SyncFunction", "--stack-name", box.stack, "--region", "us-east-1",
        "--event-file", "events/scheduled.json", "--output", "text",
    ]  # fmt: skip


def test_setup_with_yes_from_the_environment_to_uploaded_readings(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = sandbox
    code, out = _setup(box, capsys, box.answers(), "--yes")
    assert code == 0, out
    assert box.commands() == [["sam", "build"], _expected_deploy(box), _invoke(box)]
    assert "✔ The first run uploaded " in out and "of them from the last 12 hours; newest" in out
    assert f"See them at {box.ns.base_url}" in out
    assert "AWS has sent an e-mail to parent@example.org" in out and "Confirm subscription" in out
    assert len(box.ns.sgv_entries()) > 100 and box.ns.duplicates() == []
    secret = box.secret()  # the flat form, with the one person's patientId
    assert secret["LINK_UP_USERNAME"] == EMAIL and secret["NIGHTSCOUT_URL"] == box.ns.base_url
    assert secret["LINK_UP_CONNECTION"] == box.llu.accounts[EMAIL].patient_ids[0]
    saved = load_answers(box.checkout / "samconfig.toml")  # so `make deploy` runs unattended later
    assert saved is not None and (saved.stack, saved.region) == (box.stack, "us-east-1")
    assert saved.overrides == {
        "AlarmEmail": "parent@example.org",
        "LinkUpApiUrl": box.llu.url_template,
        "NightscoutSensorStart": "false",
    }
    logins = [r for r in box.llu.requests if r.path == "/llu/auth/login"]
    assert len(logins) == 2  # one by setup's check, one by the function (its own state, its own login)
    box.assert_no_secret_in(out)


def test_setup_again_changes_the_password_without_a_redeploy(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = sandbox
    assert _setup(box, capsys, box.answers(), "--yes")[0] == 0
    deployed = len(box.commands())
    box.llu.set_password(EMAIL, "a new password 2")
    code, out = _setup(box, capsys, box.answers(SETUP_CHANGE="password", LINK_UP_PASSWORD="a new password 2"), "--yes")
    assert code == 0, out
    assert box.commands()[deployed:] == [_invoke(box)]  # no build, no deploy: the secret only
    assert box.secret()["LINK_UP_PASSWORD"] == "a new password 2"
    assert "a new password 2" not in out and "Stored the new secret" in out


def test_setup_repeats_each_step_with_the_reason_until_the_answer_is_right(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = sandbox
    box.llu.add_patient(EMAIL, first_name="Sam", last_name="Second")
    typed = iter(
        [
            "not-an-email", EMAIL,  # step 1: not an address, then the address
            EMAIL,  # the step again, after the wrong password below
            "9", "1",  # the person: a number not listed, then the first
            box.ns.base_url + "/nightscout",  # step 2: no Nightscout there
            box.ns.base_url,  # the step again: the right address, then a wrong token (below)
            box.ns.base_url,  # and again
            "parent-at-example", "parent@example.org",  # step 3
            "1bad", box.stack,  # step 4: a stack name that cannot be, then a good one
            "moon-1", "us-east-1",
        ]
    )  # fmt: skip
    secrets = iter(["a wrong password", PASSWORD, box.token, "wrong-token-0123456789", box.token])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    def ask_secret(prompt: str) -> str:
        prompts.append(prompt)
        return next(secrets)

    env = {k: v for k, v in box.env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    args = Namespace(checkout=str(box.checkout), sam=str(box.sam), yes=False)
    out = io.StringIO()
    code = run_setup(args, env, time.time, out, out, ask=ask, ask_secret=ask_secret)
    text = out.getvalue()
    assert code == 0, text
    assert "✘ this is not an e-mail address. Please try again." in text
    assert "✘ LibreLink Up rejected this e-mail address and password" in text
    assert "2 more tries before the set-up stops" in text
    assert "✘ '9' is not one of the numbers (1 to 2)" in text
    assert "no Nightscout at this address (HTTP 404 for /api/v1/status.json)" in text
    assert text.count("✘ The Nightscout checks above failed") == 2  # the address, then the token
    assert "✘ this is not an e-mail address." in text.split("== 3. Alerts")[1]
    assert "✘ a stack name has letters, digits and '-'" in text
    assert "✘ this is not an AWS region name such as eu-central-1." in text
    assert text.count("Let's try that step again.") == 3  # the password, the address, the token
    assert [p.split(" (")[0].split(":")[0] for p in prompts].count("LibreLink Up password") == 2
    assert "✔ The first run uploaded " in text
    assert box.commands()[-3:] == [["sam", "build"], _expected_deploy(box), _invoke(box)]
    assert box.secret()["LINK_UP_CONNECTION"] == box.llu.accounts[EMAIL].patient_ids[0]
    box.assert_no_secret_in(text + "\n".join(prompts))


def test_setup_help_explains_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["setup", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("make setup", "--yes", "samconfig.toml", "LINK_UP_PASSWORD", "TARGETS", "confirmation e-mail"):
        assert phrase in text, phrase


def test_make_setup_from_an_empty_checkout_to_uploaded_readings(sandbox: Sandbox, tmp_path: Path) -> None:
    """`make setup SETUP_ARGS=--yes` in a fresh copy of the checkout, every answer from the environment.

    The light environment is not built here (tests/tools/test_run_env.py covers what it holds): a current
    one is put in place the way tools/run_env.py would leave it, so make reuses it.
    """
    import venv

    from tools.run_env import MARKER, marker_for

    checkout = _copy_checkout(tmp_path / "clone")
    light = checkout / ".venv-run"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(light)
    site = next(light.glob("lib/python3*/site-packages"))
    import sysconfig

    (site / "dev.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    script = light / "bin" / "linkup-sync"
    script.write_text(
        f"#!{light / 'bin' / 'python'}\nfrom linkup_sync_cli.main import main\nraise SystemExit(main())\n"
    )
    script.chmod(0o755)
    (light / MARKER).write_text(json.dumps(marker_for(sys.executable, checkout)), encoding="utf-8")

    env = {**sandbox.answers(), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["make", "--no-print-directory", "setup", f"SAM={sandbox.sam}", "SETUP_ARGS=--yes", f"PYTHON={sys.executable}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Building the light environment" not in out  # the current one was reused
    assert "✔ The first run uploaded " in out and "readings" in out
    assert sandbox.commands() == [["sam", "--version"], ["sam", "build"], _expected_deploy(sandbox), _invoke(sandbox)]
    sandbox.assert_no_secret_in(out)


def test_setup_for_two_people_in_another_region_stores_targets(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """The login, started in the region given (US), is redirected to EU2: deployed as LinkUpRegion=EU2, not
    as the region given; two people, each with a Nightscout, from TARGETS in the environment: the secret
    gets the TARGETS form."""
    box = sandbox
    second_ns = NightscoutStandIn(time.time).start()
    try:
        email = "greta.guardian@example.invalid"
        box.llu.add_account(email, PASSWORD, home_region="eu2")
        first = box.llu.add_patient(email, first_name="Ada", last_name="One").patient_id
        second = box.llu.add_patient(email, first_name="Ben", last_name="Two").patient_id
        second_ns.add_role("cgm-bridge", ROLE)
        second_token = second_ns.add_subject("bridge", ["cgm-bridge"])
        targets = [
            {"LINK_UP_CONNECTION": first, "NIGHTSCOUT_URL": box.ns.base_url, "NIGHTSCOUT_API_TOKEN": box.token},
            {"LINK_UP_CONNECTION": second, "NIGHTSCOUT_URL": second_ns.base_url, "NIGHTSCOUT_API_TOKEN": second_token},
        ]
        env = box.answers(
            LINK_UP_USERNAME=email, LINK_UP_CONNECTION="all", TARGETS=json.dumps(targets), LINK_UP_REGION="US"
        )
        del env["NIGHTSCOUT_URL"], env["NIGHTSCOUT_API_TOKEN"]
        code, out = _setup(box, capsys, env, "--yes")
        assert code == 0, out
        assert "LibreLink Up moved the login to region EU2" in out
        assert "  1  AO" in out and "  2  BT" in out  # initials only
        deploy = box.commands()[1]
        assert "LinkUpRegion=EU2" in deploy and "LinkUpRegion=US" not in deploy
        secret = box.secret()
        assert "NIGHTSCOUT_URL" not in secret and secret["TARGETS"] == targets
        assert "✔ The first run uploaded " in out
        assert f"See them at {box.ns.base_url}" in out and f"See them at {second_ns.base_url}" in out
        assert len(box.ns.sgv_entries()) > 100 and len(second_ns.sgv_entries()) > 100
        assert second_token not in out
        box.assert_no_secret_in(out)
    finally:
        second_ns.stop()


def test_setup_explains_terms_to_accept_in_the_app_and_logs_in_after_them(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = sandbox
    box.llu.force_steps(EMAIL, ["tou"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        if "Press Enter when done" in prompt:
            box.llu.force_steps(EMAIL, [])  # the person accepted the terms in the app
        return ""

    answers = box.answers()
    args = Namespace(checkout=str(box.checkout), sam=str(box.sam), yes=False)
    out = io.StringIO()
    code = run_setup(args, answers, time.time, out, out, ask=ask, ask_secret=lambda p: "")
    text = out.getvalue()
    assert code == 0, text
    assert any("open the LibreLink Up app on a phone" in p and "accept them" in p for p in prompts)
    assert "✔ Logged in to LibreLink Up." in text
    assert len([r for r in box.llu.requests if r.path == "/llu/auth/login"]) >= 2

    box.llu.force_steps(EMAIL, ["tou"])  # with --yes nobody can accept them: it stops and says what to do
    code, out_yes = _setup(box, capsys, box.answers(STACK_NAME=box.stack + "-b"), "--yes")
    assert code == 2 and "open the LibreLink Up app" in out_yes and "run the set-up again" in out_yes


def test_setup_again_changes_a_token_after_checking_it_without_a_redeploy(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = sandbox
    assert _setup(box, capsys, box.answers(), "--yes")[0] == 0
    deployed = len(box.commands())
    code, out = _setup(
        box, capsys, box.answers(SETUP_CHANGE="token", NIGHTSCOUT_API_TOKEN="not-a-known-token-42"), "--yes"
    )
    assert code == 2 and "fix NIGHTSCOUT_API_TOKEN" in out  # --yes: a token that fails the check stops it
    assert box.secret()["NIGHTSCOUT_API_TOKEN"] == box.token  # nothing stored
    new_token = box.ns.add_subject("bridge-two", ["cgm-bridge"])
    code, out = _setup(box, capsys, box.answers(SETUP_CHANGE="token", NIGHTSCOUT_API_TOKEN=new_token), "--yes")
    assert code == 0, out
    assert box.commands()[deployed:] == [_invoke(box)]  # no build, no deploy
    secret = box.secret()
    assert secret["NIGHTSCOUT_API_TOKEN"] == new_token and secret["LINK_UP_PASSWORD"] == PASSWORD
    assert new_token not in out
