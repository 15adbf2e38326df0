"""`linkup-sync doctor` and `linkup-sync sync --once` against the simulators, with a local state file.

No AWS: credentials come from environment variables, the state from a JSON file. The CLI's clock is the
simulators' virtual clock. Every doctor path is checked for its exit code, its ✔/✘ lines, how many times
it logged in (never more than once, never while a stored breaker says no), and that its output carries
no secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync.state.file import FileStateStore
from linkup_sync.state.model import account_key
from linkup_sync_cli import main as cli
from tests.integration.harness import EMAIL, PASSWORD, START, Harness
from tests.support.processes import run_python

ROOT = Path(__file__).resolve().parents[2]
# Where `pip install -e .` finds the two packages: the runtime (the Lambda layer) and the command line.
SOURCE_PATH = os.pathsep.join(str(ROOT / d) for d in ("layers/linkup_sync/python", "cli"))
BRIDGE_PERMISSIONS = ["api:entries:create", "api:entries:read", "api:treatments:create", "api:treatments:read"]


@dataclass
class Sim:
    clock: VirtualClock
    llu: LinkUpSimulator
    ns: NightscoutStandIn
    state: Path
    token: str
    env: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def run(self, capsys: pytest.CaptureFixture[str], *args: str, **env: str) -> tuple[int, str, str]:
        code = cli.main([*args, "--state", str(self.state)], env={**self.env, **env}, clock=self.clock)
        captured = capsys.readouterr()
        self.outputs.append(captured.out + captured.err)
        return code, unwrap(captured.out), unwrap(captured.err)

    def logins(self) -> int:
        return sum(1 for r in self.llu.requests if r.path == "/llu/auth/login")

    def secrets(self) -> list[str]:
        values = [
            PASSWORD,
            self.token,
            hashlib.sha1(self.token.encode()).hexdigest(),  # noqa: S324
            self.env["NIGHTSCOUT_API_TOKEN"],
            self.env["LINK_UP_PASSWORD"],
            hashlib.sha1(self.env["NIGHTSCOUT_API_TOKEN"].encode()).hexdigest(),  # noqa: S324
        ]
        account = FileStateStore(self.state).load(account_key(EMAIL)).account
        if account.ticket is not None:
            values += [account.ticket.token, account.ticket.account_id, account.ticket.user_id]
        values += [r.headers.get("authorization", "").removeprefix("Bearer ") for r in self.llu.requests]
        values += [r.headers.get("account-id", "") for r in self.llu.requests]
        values += [r.headers.get("api-secret", "") for r in self.ns.requests]
        values += [r.headers.get("authorization", "").removeprefix("Bearer ") for r in self.ns.requests]
        return [v for v in values if v and len(v) >= 6]

    def assert_no_secrets(self) -> None:
        text = "\n".join(self.outputs)
        for value in self.secrets():
            assert value not in text, "a secret reached the output"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    clock = VirtualClock(START)
    llu = LinkUpSimulator(clock).start()
    ns = NightscoutStandIn(clock).start()
    ns.add_role("cgm-bridge", BRIDGE_PERMISSIONS)
    token = ns.add_subject("bridge", ["cgm-bridge"])
    s = Sim(clock=clock, llu=llu, ns=ns, state=tmp_path / "state" / "state.json", token=token)
    s.env = {
        "LINK_UP_USERNAME": EMAIL,
        "LINK_UP_PASSWORD": PASSWORD,
        "NIGHTSCOUT_URL": ns.base_url,
        "NIGHTSCOUT_API_TOKEN": token,
        "LINK_UP_REGION": "EU",
        "LINK_UP_API_URL": llu.url_template,
    }
    try:
        yield s
        s.assert_no_secrets()
    finally:
        llu.stop()
        ns.stop()


def healthy(sim: Sim, region: str = "eu") -> None:
    sim.llu.add_account(EMAIL, PASSWORD, home_region=region)
    sim.llu.add_patient(EMAIL, first_name="Pat", last_name="Example")


def unwrap(text: str) -> str:
    """Doctor wraps long lines at 100 columns with an indent: join them again for the phrase checks."""
    return re.sub(r"\n {4,}", " ", text)


def marks(out: str) -> list[str]:
    """The check lines: '✔ Title', '✘ Title' or '– Title'."""
    return [line.split(":")[0] for line in out.splitlines() if line[:1] and line[:1] in "✔✘–"]


# --- doctor: the healthy path ---------------------------------------------------------------------


def test_doctor_all_checks_pass_then_reuses_the_stored_login(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 0, out
    assert marks(out) == [
        "✔ Settings",
        "✔ Credentials",
        "✔ LibreLink Up login",
        "✔ Connections",
        "✔ Newest reading",
        "✔ Nightscout URL",
        "✔ Nightscout server",
        "✔ Nightscout token",
        "✔ Sensor Start treatment",
    ]
    assert "logged in (region EU)" in out and "All 9 checks passed." in out
    patient = next(iter(sim.llu.patients))
    assert f"{patient}  PE" in out and "(synced)" in out  # the id to fill LINK_UP_CONNECTION, initials only
    assert "Pat" not in out and "Example" not in out
    assert "Nightscout 15.0.7" in out and "Newest reading: less than 1 min old" in out
    assert sim.logins() == 1
    assert sim.ns.entries == [] and sim.ns.treatments == []  # the checks store nothing in Nightscout

    code, out, _ = sim.run(capsys, "doctor")
    assert code == 0 and "reused the stored login" in out
    assert sim.logins() == 1  # no second login


def test_doctor_with_api_v3_checks_the_jwt_exchange(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_V3="true")
    assert code == 1
    assert "✘ Nightscout token: Nightscout knows the token, but for API v3 the token's role needs" in out
    assert "Missing: api:entries:update" in out
    sim.ns.add_role("cgm-bridge-v3", [*BRIDGE_PERMISSIONS, "api:entries:update", "api:treatments:update"])
    token = sim.ns.add_subject("bridge3", ["cgm-bridge-v3"])
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_V3="true", NIGHTSCOUT_API_TOKEN=token)
    assert code == 0, out
    assert "✔ Nightscout token: the token may upload with API v3" in out
    assert sim.ns.jwt_for(token) not in out
    code, out, _ = sim.run(
        capsys,
        "doctor",
        NIGHTSCOUT_API_V3="true",
        NIGHTSCOUT_API_TOKEN=hashlib.sha1(token.encode()).hexdigest(),  # noqa: S324
    )
    # issue 13: a SHA-1 is named as such, with the fix (paste the token itself)
    assert code == 1 and "✘ Nightscout token: NIGHTSCOUT_API_TOKEN looks like a SHA-1" in out
    assert "the access token itself" in out


def test_doctor_flags_a_token_that_cannot_post_the_sensor_start(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_TOKEN=sim.ns.uploader_token("uploader"))
    assert code == 1
    assert "✔ Nightscout token" in out and "✘ Sensor Start treatment" in out
    assert "NIGHTSCOUT_SENSOR_START=false" in out
    code, out, _ = sim.run(
        capsys, "doctor", NIGHTSCOUT_API_TOKEN=sim.ns.uploader_token("uploader"), NIGHTSCOUT_SENSOR_START="false"
    )
    assert code == 0 and "Sensor Start" not in out


# --- doctor: each broken set-up ---------------------------------------------------------------------


def test_doctor_bad_password_trips_the_breaker_and_reset_login_clears_it(
    sim: Sim, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(sim)
    wrong = "not the password"
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_PASSWORD=wrong)
    assert code == 1
    assert "✘ LibreLink Up login: LibreLink Up rejected the e-mail address or password." in out
    assert "`linkup-sync doctor --reset-login`" in out
    assert "– Connections: not checked" in out and "✔ Nightscout token" in out
    assert sim.logins() == 1 and wrong not in out

    code, out, _ = sim.run(capsys, "doctor", LINK_UP_PASSWORD=wrong)  # the stored breaker: no new login
    assert code == 1 and "Recorded in" in out and sim.logins() == 1

    code, out, _ = sim.run(capsys, "doctor")  # fixed, but the breaker still holds for this version ("env")
    assert code == 1 and sim.logins() == 1
    code, out, _ = sim.run(capsys, "doctor", "--reset-login")
    assert code == 0, out
    assert "--reset-login: cleared the block after LibreLink Up rejected the password" in out
    assert sim.logins() == 2
    assert all(wrong not in text for text in sim.outputs)


def test_doctor_redirect_says_which_region_to_set(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim, region="eu2")
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 1
    assert "✔ LibreLink Up login: logged in (region EU2)" in out
    assert "✘ LINK_UP_REGION: your account is in region EU2: set LINK_UP_REGION=EU2 (it is EU)" in out
    assert "✔ Connections" in out and "✔ Newest reading" in out
    assert [r.region for r in sim.llu.requests if r.path == "/llu/auth/login"] == ["eu", "eu2"]  # one login
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_REGION="EU2")
    assert code == 0, out


def test_doctor_terms_step(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.llu.force_steps(EMAIL, ["tou"])
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 1
    assert (
        "✘ LibreLink Up login: LibreLink Up needs the account holder to act before it sends data again: "
        "open the LibreLink Up app, log in with the follower account and accept the new Terms of Use."
    ) in out
    assert sim.logins() == 1
    code, out, _ = sim.run(capsys, "doctor")  # within the hour: no login, the stored reason instead
    assert code == 1 and "waiting for the person to act (action_required:tou)" in out and sim.logins() == 1
    sim.llu.force_steps(EMAIL, [])  # accepted in the app
    code, out, _ = sim.run(capsys, "doctor", "--reset-login")
    assert code == 0, out


def test_doctor_version_rejected(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.llu.set_min_version("4.17.0")
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_VERSION="4.16.0")  # pinned: refused, not adopted
    assert code == 1
    assert "✔ LibreLink Up login" in out
    assert (
        "✘ LibreLink Up app version: LibreLink Up rejected app version 4.16.0 and requires 4.17.0. Set the "
        "LinkUpVersion parameter (LINK_UP_VERSION) to 4.17.0"
    ) in out
    # issue 13: how to make it stick (a one-off --parameter-overrides is undone by samconfig.toml's answers)
    assert "samconfig.toml" in out and "undone by the next make deploy" in " ".join(out.split())
    before = len(sim.llu.requests)
    # the stored breaker: no request with the refused version (for an hour)
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_VERSION="4.16.0")
    assert code == 1 and "✘ LibreLink Up app version: LibreLink Up refused app version 4.16.0" in out
    assert len(sim.llu.requests) == before
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_VERSION="4.17.0")
    assert code == 0, out
    code, out, _ = sim.run(capsys, "doctor")  # the default, auto: the minimum is adopted, nobody has to act
    assert code == 0, out


def test_doctor_lockout(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.llu.account(EMAIL).locked_until = sim.clock() + 300  # another device tried an old password
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 1
    assert "✘ LibreLink Up login: LibreLink Up has locked the account for" in out
    before = len(sim.llu.requests)
    code, out, _ = sim.run(capsys, "doctor", "--reset-login")  # --reset-login keeps a lockout
    assert code == 1 and "The LibreLink Up account is locked; no login is tried for another" in out
    assert len(sim.llu.requests) == before
    sim.clock.advance(400)
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 0, out


def test_doctor_no_connections(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    sim.llu.add_account(EMAIL, PASSWORD)
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 1
    assert "✔ LibreLink Up login" in out
    assert "✘ Connections: This LibreLink Up account follows nobody yet. The sensor wearer must invite it" in out
    assert "– Newest reading: not checked" in out


def test_doctor_lists_several_people_and_an_unknown_connection(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    second = sim.llu.add_patient(EMAIL, first_name="Quinn", last_name="Other")
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 0 and "this account follows 2 people" in out and f"{second.patient_id}  QO" in out
    assert "set LINK_UP_CONNECTION to one of the patientIds above" in out
    unknown = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_CONNECTION=unknown)
    assert (
        code == 1
        and (
            f"✘ Connections: The patient id {unknown} (from the LINK_UP_CONNECTION setting) is not followed by this "
            "LibreLink Up account"
        )
        in out
    )
    assert f"{second.patient_id}  QO" in out and "Quinn" not in out


def test_doctor_nightscout_401(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_API_TOKEN="wrong-0123456789abcdef")
    assert code == 1
    assert "✔ Nightscout server" in out
    assert "✘ Nightscout token: Nightscout answered 401 Unauthorized. Check NIGHTSCOUT_API_TOKEN" in out
    assert sim.ns.count("/api/v1/entries/preview", "POST") == 1 and sim.ns.entries == []


def test_doctor_nightscout_unreachable(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    sim.ns.set_unreachable(True)
    code, out, _ = sim.run(capsys, "doctor")
    assert code == 1
    assert "✘ Nightscout server: Nightscout could not be reached (" in out
    assert "– Nightscout token: not checked (needs a reachable Nightscout)" in out
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_URL="http://127.0.0.1:9")  # nothing listens there
    assert code == 1 and "✘ Nightscout server: Nightscout could not be reached (" in out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com", "✘ Nightscout URL: NIGHTSCOUT_URL starts with http://, which would send secrets"),
        ("my-site", "✘ Nightscout URL: NIGHTSCOUT_URL 'my-site' is not a web address"),
    ],
)
def test_doctor_wrong_url_form(sim: Sim, capsys: pytest.CaptureFixture[str], url: str, expected: str) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_URL=url)
    assert code == 1 and expected in out
    assert "✔ LibreLink Up login" in out and "– Nightscout token: not checked" in out


def test_doctor_cleans_up_the_url_and_shows_it(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "doctor", NIGHTSCOUT_URL=sim.ns.base_url + "/api/v1/")
    assert code == 0 and f"✔ Nightscout URL: {sim.ns.base_url}\n" in out


def test_doctor_bad_settings_and_missing_credentials(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = sim.run(capsys, "doctor", LINK_UP_REGION="XX", LINK_UP_PASSWORD="", NIGHTSCOUT_API_TOKEN="")
    assert code == 1
    assert "✘ Settings" in out and "LINK_UP_REGION 'XX' is not a LibreLink Up region" in out
    assert "✘ Credentials" in out and "LINK_UP_PASSWORD is not set." in out
    assert "NIGHTSCOUT_API_TOKEN is not set." in out
    assert "– LibreLink Up: not checked" in out and "– Nightscout: not checked" in out
    assert sim.llu.requests == [] and sim.ns.requests == []


# --- sync --once --------------------------------------------------------------------------------------


def test_sync_twice_uploads_once(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith("uploaded ") and "(logged in to LibreLink Up)" in out
    first = len(sim.ns.sgv_entries())
    assert first > 100  # the current reading and ~12 h of history

    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith("nothing new to upload; newest reading")
    sim.clock.advance(60)
    code, out, _ = sim.run(capsys, "sync", "--once", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["uploaded"] <= 2 and summary["logins"] == 0
    assert len(sim.ns.sgv_entries()) == first + summary["uploaded"]
    assert sim.ns.duplicates() == [] and sim.logins() == 1
    assert os.stat(sim.state).st_mode & 0o777 == 0o600


def test_dry_run_uploads_nothing_and_records_nothing(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, _ = sim.run(capsys, "sync", "--once", "--dry-run")
    assert code == 0
    lines = out.splitlines()
    readings = [ln for ln in lines if "mg/dL" in ln]
    assert len(readings) > 100 and readings[-1].rstrip().endswith("current")
    assert lines[-2].startswith(f"would upload {len(readings)} readings")
    assert lines[-1] == "dry run: nothing was sent to Nightscout and nothing was recorded as uploaded"
    # Issue 23 (finding 2): the dry run asks Nightscout what it holds, as the real run does; it only reads.
    assert [(r.method, r.path) for r in sim.ns.requests] == [("GET", "/api/v1/entries/sgv.json")]
    stored = FileStateStore(sim.state).load(account_key(EMAIL))
    assert stored.targets == {} and stored.account.ticket is not None  # the login is kept, no upload recorded

    code, out, _ = sim.run(capsys, "sync", "--once")
    assert code == 0 and out.startswith(f"uploaded {len(readings)} readings") and sim.logins() == 1


def test_sync_exit_codes_needs_person_2_on_every_run_failure_1(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(sim)
    code, out, err = sim.run(capsys, "sync", "--once", LINK_UP_PASSWORD="not the password")
    # issue 13: the first wrong-password run already names --reset-login, and exits 2 (a person must act)
    assert code == 2 and sim.logins() == 1
    assert "sync --once --reset-login" in err
    for _ in range(3):  # every later run while the breaker holds: still 2, and no login
        sim.clock.advance(300)
        code, out, _ = sim.run(capsys, "sync", "--once", LINK_UP_PASSWORD="not the password")
        assert code == 2 and out.startswith("skipped: LibreLink Up rejected the e-mail address or password")
        assert "sync --once --reset-login" in out and sim.logins() == 1
    code, out, _ = sim.run(capsys, "sync", "--once", "--quiet", "--json", LINK_UP_PASSWORD="not the password")
    assert code == 2
    code, out, _ = sim.run(capsys, "sync", "--once", "--reset-login")
    assert code == 0 and "uploaded" in out

    sim.ns.set_unreachable(True)
    sim.clock.advance(300)
    code, out, err = sim.run(capsys, "sync", "--once")
    assert code == 1 and out == "" and err.startswith("linkup-sync: failed: Nightscout could not be reached")


def test_sync_needs_once(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sim.run(capsys, "sync")
    assert code == 2 and "add --once" in err


def test_python_dash_m_runs_the_same_command(sim: Sim, tmp_path: Path) -> None:
    healthy(sim)
    env = {**os.environ, **sim.env, "PYTHONPATH": SOURCE_PATH}
    proc = run_python(
        "-m",
        "linkup_sync_cli",
        "sync",
        "--once",
        "--state",
        str(sim.state),
        "--now",
        str(sim.clock()),
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("uploaded ")
    assert "boto3" not in proc.stderr
    helped = run_python("-m", "linkup_sync_cli", "--help", env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "usage: linkup-sync" in helped.stdout and "doctor" in helped.stdout


def test_the_cli_imports_no_aws_library_without_aws_options(sim: Sim, tmp_path: Path) -> None:
    healthy(sim)
    code = (
        "import sys\n"
        "from linkup_sync_cli.main import main\n"
        f"rc = main(['doctor', '--state', {str(sim.state)!r}, '--now', {str(sim.clock())!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'aws_lambda_powertools'))\n"
        "print('AWS-MODULES', loaded, rc)\n"
    )
    env = {**os.environ, **sim.env, "PYTHONPATH": SOURCE_PATH}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert "AWS-MODULES [] 0" in proc.stdout, proc.stdout + proc.stderr


def test_demo_is_not_part_of_the_installed_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo needs the repository's simulators: the command only points at `make demo`, whatever follows."""
    for argv in (["demo"], ["demo", "--runs", "3"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "run `make demo` in a clone of the linkup-sync repository" in err
    assert "demo" not in cli.build_parser().format_help()


def test_aws_options_share_the_login_with_the_function(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """--secret-id and --table: doctor and sync --once use the stack's secret and table (moto here)."""
    from aws_lambda_powertools.utilities import parameters

    h = harness
    h.llu.add_patient(EMAIL)
    h.provision()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    env = {"LINK_UP_API_URL": h.env["LINK_UP_API_URL"], "LINK_UP_REGION": "EU", "NIGHTSCOUT_SENSOR_START": "false"}
    aws = ["--secret-id", h.secret_arn, "--table", h.env["STATE_TABLE_NAME"]]
    assert cli.main(["doctor", *aws], env=env, clock=h.clock) == 0, capsys.readouterr().out
    out = unwrap(capsys.readouterr().out)
    assert f"read from the secret {h.secret_arn}" in out and "is kept in DynamoDB table" in out
    h.tick(60)
    assert cli.main(["sync", "--once", *aws], env=env, clock=h.clock) == 0
    assert capsys.readouterr().out.startswith("uploaded ")
    h.tick(240)
    result = h.cold_run()  # the Lambda handler (in a fresh process): the same stored login, nothing twice
    assert result["logins"] == 0 and result["uploaded"] <= 5
    assert sum(1 for r in h.llu.requests if r.path == "/llu/auth/login") == 1
    assert h.ns.duplicates() == []
    assert h.ns_token not in out and PASSWORD not in out
