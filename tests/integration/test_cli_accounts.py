"""`linkup-sync accounts add | list | show | remove` against a moto server (DynamoDB and KMS) on 127.0.0.1.

The table is made from template.yaml's StateTable, the key in moto's KMS. State and incidents are
planted with the package's own stores (as a worker's run writes them). Every output of every command is
kept and checked for the account's secret values at the end of each test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from tools.local_stack import create_state_table

from linkup_sync.errors import LinkUpBadCredentials, SecretError
from linkup_sync.hosted.accounts import HOSTED_HINT
from linkup_sync.hosted.registry import Account, Registry, account_id_for, incidents_partition
from linkup_sync.hosted.schedule import INTERVALS, account_partition, offset
from linkup_sync.hosted.vault import Vault
from linkup_sync.incidents.model import incident_for, stale_incident
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.incidents import DynamoDBIncidentStore
from linkup_sync.state.model import AccountState, TargetState, account_key, target_id
from linkup_sync_cli import main as cli
from linkup_sync_cli.accounts_view import schedule_text

NOW = 1_796_000_000.0  # 2026-11-30: a fixed clock, so ages are exact
FIONA = "fiona.follower@example.invalid"
GREG = "greg.guardian@example.invalid"
FIONA_PASSWORD = "fiona-pass-0001"
PATIENT = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
PATIENT_2 = "0d3c6b7a-5e4f-4a1b-8c9d-7e6f5a4b3c2d"


def flat(email: str = FIONA, password: str = FIONA_PASSWORD, **extra: object) -> dict[str, object]:
    return {
        "LINK_UP_USERNAME": email,
        "LINK_UP_PASSWORD": password,
        "NIGHTSCOUT_URL": f"https://{email.split('.')[0]}-ns.example.net",
        "NIGHTSCOUT_API_TOKEN": f"token-of-{email.split('.')[0]}-0123456789",
        **extra,
    }


class PublicDns:
    """A resolver for `accounts add` that answers a public address for every name: no test asks a real DNS."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return ["93.184.215.14"]


class Terminal(io.StringIO):
    """Standard input that is a terminal: the command must not read it (it would wait for typing)."""

    def isatty(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise AssertionError("a terminal was read")


@dataclass
class Stack:
    table: str
    key_arn: str
    capsys: pytest.CaptureFixture[str]
    now: list[float] = field(default_factory=lambda: [NOW])
    outputs: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    resolve: Callable[[str, int], Sequence[str]] = field(default_factory=PublicDns)

    def clock(self) -> float:
        return self.now[0]

    def run(self, *args: str, stdin: io.StringIO | None = None, table: bool = True) -> tuple[int, str, str]:
        argv = ["accounts", *args, *(["--table", self.table] if table else [])]
        code = cli.main(
            argv, clock=self.clock, stdin=stdin if stdin is not None else io.StringIO(""), resolve=self.resolve
        )
        captured = self.capsys.readouterr()
        self.outputs.append(captured.out + captured.err)
        return code, captured.out, captured.err

    def add(self, raw: object, *extra: str, key: bool = True) -> tuple[int, str, str]:
        self.secrets.update(secret_values(raw))
        text = raw if isinstance(raw, str) else json.dumps(raw)
        return self.run("add", *(["--key-id", self.key_arn] if key else []), *extra, stdin=io.StringIO(text))

    @property
    def registry(self) -> Registry:
        return Registry(self.table, clock=self.clock)

    def items(self) -> set[tuple[str, str]]:
        client = boto3.client("dynamodb")
        found: set[tuple[str, str]] = set()
        for page in client.get_paginator("scan").paginate(TableName=self.table):
            found.update((item["pk"]["S"], item["sk"]["S"]) for item in page["Items"])
        return found

    def plant_run(self, email: str, url: str, *, uploaded_ago_s: int, patient: str = PATIENT) -> None:
        """What a worker's runs leave: the login item, one target with its upload, a bad-password
        incident (open) and a stale-data one (closed)."""
        at = self.clock() - uploaded_ago_s
        store = DynamoDBStateStore(self.table, clock=lambda: at)
        key = account_key(email)
        store.save_account(key, AccountState(region="eu"))
        store.record_upload(key, TargetState(target_id=target_id(patient, url)), [int(at) - 60, int(at) - 360])
        incidents = DynamoDBIncidentStore(
            self.table, client=store.client, clock=lambda: at, pk=incidents_partition(account_id_for(email))
        )
        bad = incident_for(LinkUpBadCredentials(), secret_hint=HOSTED_HINT)
        assert bad is not None
        incidents.open_incident(bad, int(at))
        stale = incidents.open_incident(stale_incident(30, scope=patient), int(at) - 600)
        assert stale is not None and incidents.close(stale, int(at) - 300)

    def assert_no_secrets(self) -> None:
        text = "\n".join(self.outputs)
        for value in self.secrets:
            assert value not in text, "a secret value of the account's JSON reached the output"


# The settings (show prints an account's own), and the patientId: show names the person a target serves by
# it, as doctor does; neither is a credential.
NOT_SECRET = ("LINK_UP_REGION", "LINK_UP_VERSION", "LINK_UP_CONNECTION")


def secret_values(raw: object) -> set[str]:
    """Every value of the credentials (and their SHA-1, the form Nightscout's api-secret takes)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return set()
    found: set[str] = set()

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and len(value) >= 6 and key not in NOT_SECRET:
            found.update({value, value.strip(), hashlib.sha1(value.encode()).hexdigest()})  # noqa: S324

    walk(raw)
    return found


@pytest.fixture
def stack(aws_env: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Stack]:
    table = create_state_table(boto3.client("dynamodb"), f"linkup-sync-hosted-{uuid.uuid4().hex[:8]}")
    key = boto3.client("kms").create_key(Description="CredentialsKey")["KeyMetadata"]["Arn"]
    s = Stack(table=table, key_arn=key, capsys=capsys)
    yield s
    s.assert_no_secrets()


# --- add --------------------------------------------------------------------------------------------


def test_add_prints_only_the_id_and_stores_the_credentials_encrypted_for_this_account(stack: Stack) -> None:
    raw = flat()
    code, out, err = stack.add(raw)
    account_id = account_id_for(FIONA)
    assert code == 0, err
    assert out == account_id + "\n"  # the id alone: `ID=$(linkup-sync accounts add ... < a.json)`
    minute = offset(account_id, 5)
    assert f"account {account_id} added: f***@e***.invalid, 1 person; runs every 5 min, at :{minute:02d}," in err
    account = stack.registry.get(account_id)
    assert account is not None and account.interval == 5 and account.people == 1 and account.settings == {}
    assert account.created_at == account.updated_at == int(NOW) and account.key_id == stack.key_arn
    assert (account_partition(account_id, 5), account_id) in stack.items()  # listed where the dispatcher looks
    assert b"fiona-pass-0001" not in account.ciphertext
    assert json.loads(Vault(stack.key_arn).open(account_id, account.ciphertext)) == raw
    with pytest.raises(SecretError):  # the encryption context names the account: no other id opens it
        Vault(stack.key_arn).open(account_id_for(GREG), account.ciphertext)


def test_the_installed_command_reads_a_file_given_on_standard_input(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    raw = flat(NIGHTSCOUT_URL="https://52.94.236.248")  # a public address as such: nothing to look up in DNS
    path.write_text(json.dumps(raw), encoding="utf-8")
    stack.secrets.update(secret_values(raw))
    with path.open(encoding="utf-8") as account_file:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "linkup_sync_cli",
                "accounts",
                "add",
                "--table",
                stack.table,
                "--key-id",
                stack.key_arn,
            ],
            stdin=account_file,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    stack.outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and proc.stdout == account_id_for(FIONA) + "\n", proc.stderr
    assert stack.registry.get(account_id_for(FIONA)) is not None


def test_add_the_targets_form_with_settings_of_its_own(stack: Stack) -> None:
    raw = {
        "LINK_UP_USERNAME": GREG,
        "LINK_UP_PASSWORD": "greg-pass-0002",
        "TARGETS": [
            {
                "LINK_UP_CONNECTION": PATIENT,
                "NIGHTSCOUT_URL": "https://anna.example.net",
                "NIGHTSCOUT_API_TOKEN": "anna-token-1",
            },
            {
                "LINK_UP_CONNECTION": PATIENT_2,
                "NIGHTSCOUT_URL": "https://ben.example.net",
                "NIGHTSCOUT_API_TOKEN": "ben-token-22",
                "NIGHTSCOUT_API_V3": True,
            },
        ],
        "LINK_UP_REGION": "EU2",
        "LINK_UP_VERSION": "4.16.0",
        "SYNC_INTERVAL_MINUTES": 10,
    }
    code, out, err = stack.add(raw)
    account_id = out.strip()
    assert code == 0 and account_id == account_id_for(GREG), err
    assert "2 people; runs every 10 min, at :" in err
    account = stack.registry.get(account_id)
    assert account is not None and account.people == 2 and account.interval == 10
    assert account.settings == {"LINK_UP_REGION": "EU2", "LINK_UP_VERSION": "4.16.0"}
    assert (account_partition(account_id, 10), account_id) in stack.items()


def test_a_second_add_is_refused_and_replace_keeps_the_state(stack: Stack) -> None:
    assert stack.add(flat())[0] == 0
    account_id = account_id_for(FIONA)
    first = stack.registry.get(account_id)
    assert first is not None
    stack.plant_run(FIONA, str(flat()["NIGHTSCOUT_URL"]), uploaded_ago_s=120)
    kept = {item for item in stack.items() if item[0] in (account_key(FIONA), incidents_partition(account_id))}
    assert len(kept) == 4  # login, target; two incidents

    code, out, err = stack.add(flat(password="fiona-pass-NEW1"))
    assert code == 2 and out == ""
    assert f"This LibreLink Up account is already registered as {account_id}." in err and "--replace" in err
    unchanged = stack.registry.get(account_id)
    assert unchanged is not None and unchanged.ciphertext == first.ciphertext

    stack.now[0] += 3600
    code, out, err = stack.add(flat(password="fiona-pass-NEW1", SYNC_INTERVAL_MINUTES="15"), "--replace")
    assert code == 0 and out == account_id + "\n", err
    assert "replaced (its login, breakers and record of uploads are kept)" in err and "every 15 min" in err
    replaced = stack.registry.get(account_id)
    assert replaced is not None and replaced.interval == 15
    assert replaced.created_at == first.created_at and replaced.updated_at == int(NOW) + 3600
    assert replaced.cred_version != first.cred_version  # a bad-password breaker ends with new credentials
    assert (
        json.loads(Vault(stack.key_arn).open(account_id, replaced.ciphertext))["LINK_UP_PASSWORD"] == "fiona-pass-NEW1"
    )
    items = stack.items()
    assert kept <= items
    assert (account_partition(account_id, 15), account_id) in items
    assert (account_partition(account_id, 5), account_id) not in items  # no longer due at the old minute


def test_bad_json_lists_every_problem_at_once_and_echoes_no_value(stack: Stack) -> None:
    raw = {
        "LINK_UP_USERNAME": FIONA,
        "NIGHTSCOUT_URL": "http://fiona-ns.example.net",
        "NIGHTSCOUT_API_TOKEN": "token-of-fiona-0123456789",
        "NIGHTSCOUT_API_V4": True,
        "LINK_UP_REGOIN": "EU",
        "LINK_UP_REGION": "NARNIA",
        "SYNC_INTERVAL_MINUTES": 7,
    }
    code, out, err = stack.add(raw, key=False)
    assert code == 2 and out == ""
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    expected = [
        "--key-id is missing: give the stack's output CredentialsKeyArn",
        "LINK_UP_REGION 'NARNIA' is not a LibreLink Up region",  # issue 23, finding 8: not a secret, so shown
        "SYNC_INTERVAL_MINUTES must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60 (minutes; default 5), not '7'",
        "'NIGHTSCOUT_API_V4' in the account's JSON is not a key linkup-sync knows. Did you mean NIGHTSCOUT_API_V3?",
        "'LINK_UP_REGOIN' in the account's JSON is not a key linkup-sync knows. Did you mean LINK_UP_REGION?",
        "LINK_UP_PASSWORD is missing from the account's JSON.",
        "NIGHTSCOUT_URL starts with http://, which would send secrets unencrypted over the internet.",
    ]
    assert len(problems) == len(expected), err
    for text in expected:
        assert any(text in line for line in problems), text
    assert err.startswith("linkup-sync accounts add: The account cannot be added:")
    assert "token-of-fiona-0123456789" not in err  # passwords and tokens are never shown
    assert stack.items() == set()  # nothing stored


def test_add_refuses_what_is_not_one_account_without_echoing_it(stack: Stack) -> None:
    code, _, err = stack.add(flat(), key=False)
    assert code == 2 and "--key-id is missing" in err and stack.items() == set()
    broken = json.dumps(flat())[:-1] + ', "LINK_UP_PASSWORD": "half-typed-secret"'
    stack.secrets.update({"half-typed-secret", *secret_values(flat())})
    code, _, err = stack.add(broken)
    assert code == 2 and "Standard input is not JSON: give one JSON object, e.g. < account.json." in err
    code, _, err = stack.add(json.dumps(flat()) + "\n" + json.dumps(flat(GREG)))
    assert code == 2 and "is not JSON" in err
    code, _, err = stack.add("[]")
    assert code == 2 and "must be one object" in err
    code, _, err = stack.add("  \n")
    assert code == 2 and "Standard input is empty" in err
    code, _, err = stack.add(" " * 70_000)
    assert code == 2 and "more than 65536 characters" in err
    assert stack.items() == set()


def test_a_terminal_on_standard_input_is_not_read(stack: Stack) -> None:
    code, out, err = stack.run("add", "--key-id", stack.key_arn, stdin=Terminal())
    assert code == 2 and out == ""
    assert f"linkup-sync accounts add --table {stack.table} --key-id KEY < account.json" in err
    assert stack.items() == set()


def test_aws_failures_are_messages_with_the_fix(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = stack.run("add", "--key-id", "alias/no-such-key", stdin=io.StringIO(json.dumps(flat())))
    assert code == 2 and "KMS refused the stack's CredentialsKey (NotFoundException)" in err
    assert stack.items() == set()
    stack.table = "no-such-table"
    code, _, err = stack.run("list")
    assert code == 1 and "AWS has no table no-such-table in this region" in err and "StateTableName" in err
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    code, _, err = stack.run("show", account_id_for(FIONA))
    assert code == 2 and "No AWS region is set: set AWS_REGION" in err


def test_the_options_a_person_can_get_wrong(stack: Stack) -> None:
    with pytest.raises(SystemExit) as exit_:
        stack.run("list", table=False)
    assert exit_.value.code == 2 and "--table" in stack.capsys.readouterr().err
    code, out, _ = stack.run(table=False)
    assert code == 2 and "add     reads one account's JSON on standard input" in out
    code, _, err = stack.run("show", "not-an-id")
    assert code == 2 and "An account id has 12 characters" in err
    code, _, err = stack.run("remove", "0123456789ab")
    assert code == 2 and f"There is no account 0123456789ab in the table {stack.table}." in err
    code, _, err = stack.run("show", FIONA)
    assert code == 2 and "There is no account for f***@e***.invalid" in err and FIONA not in err


# --- list and show --------------------------------------------------------------------------------


def test_list_and_show_the_state_and_open_incidents_never_the_credentials(stack: Stack) -> None:
    assert stack.add(flat(LINK_UP_REGION="EU"))[0] == 0
    assert stack.add(flat(GREG, "greg-pass-0002"))[0] == 0
    fiona, greg = account_id_for(FIONA), account_id_for(GREG)
    stack.plant_run(FIONA, str(flat()["NIGHTSCOUT_URL"]), uploaded_ago_s=180)
    assert stack.registry.claim(fiona, int(NOW // 60) - 2) is not None  # the worker claimed a run 2 min ago

    code, out, _ = stack.run("list")
    assert code == 0
    header, *rows, summary = out.splitlines()
    assert header.split() == ["ID", "E-MAIL", "PEOPLE", "RUNS", "LAST", "UPLOAD", "OPEN", "INCIDENTS"]
    by_id = {row.split()[0]: row for row in rows}
    assert sorted(by_id) == sorted([fiona, greg])
    assert by_id[fiona].split("  ")[0] == fiona
    assert "f***@e***.invalid" in by_id[fiona] and f"5 min at :{offset(fiona, 5):02d}" in by_id[fiona]
    assert "3 min ago" in by_id[fiona] and by_id[fiona].endswith("1: LibreLink Up rejected the password")
    assert "never" in by_id[greg] and by_id[greg].endswith("none")
    assert summary.startswith("2 accounts; 1 with open incidents") and summary.endswith("1 without an upload yet")

    code, out, _ = stack.run("list", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {line["id"] for line in lines} == {fiona, greg}
    first = next(line for line in lines if line["id"] == fiona)
    assert first["last_upload_age_s"] == 180 and first["open_incidents"] == ["LibreLink Up rejected the password"]
    assert first["interval_minutes"] == 5 and first["minute_offset"] == offset(fiona, 5)

    code, out, _ = stack.run("show", fiona)
    assert code == 0
    assert out.startswith(f"account {fiona}\n  follower e-mail   f***@e***.invalid\n  people served     1\n")
    assert f"  schedule          {schedule_text(fiona, 5)}; minute offset {offset(fiona, 5)} of 5\n" in out
    assert "last run claimed  2026-11-30 " in out and "(2 min ago)" in out
    assert "settings          LINK_UP_REGION=EU" in out
    assert f"patient {PATIENT}, site " in out and "last upload 3 min ago; newest reading it holds: 4 min ago" in out
    assert "open incidents: 1\n  LibreLink Up rejected the password (since 2026-11-30 " in out
    assert "what to do:    Put the login of the LibreLink Up (follower) app" in out and HOSTED_HINT in out
    assert "no new reading" not in out  # the closed incident is history, not listed
    assert stack.run("show", FIONA.upper())[1] == out  # the follower e-mail names it too

    code, out, _ = stack.run("show", greg, "--json")
    details = json.loads(out)
    assert (
        code == 0 and details["targets"] == [] and details["incidents"] == [] and details["last_run_claimed_at"] is None
    )
    assert not {"credentials", "ciphertext", "cred_version"} & set(details)
    for account_id in (fiona, greg):
        account = stack.registry.get(account_id)
        assert account is not None
        assert account.ciphertext.hex() not in "".join(stack.outputs) and account.cred_version not in "".join(
            stack.outputs
        )


def test_list_reads_many_accounts(stack: Stack) -> None:
    registry = stack.registry
    ids = []
    for i in range(60):
        email = f"follower{i:03d}@example.invalid"
        account_id = account_id_for(email)
        ids.append(account_id)
        account = Account(
            id=account_id,
            state_key=account_key(email),
            interval=INTERVALS[i % len(INTERVALS)],
            ciphertext=b"sealed",
            key_id=stack.key_arn,
            cred_version="v1",
            email_masked="f***@e***.invalid",
            people=1,
        )
        registry.put(account)
        if i % 10 == 0:
            url = f"https://site{i}.example.net"
            DynamoDBStateStore(stack.table, clock=lambda: NOW - 60).record_upload(
                account.state_key, TargetState(target_id=target_id(PATIENT, url)), [int(NOW) - 120]
            )
    code, out, _ = stack.run("list")
    rows = out.splitlines()[1:-1]
    assert code == 0 and [row.split()[0] for row in rows] == sorted(ids)
    assert sum(1 for row in rows if "1 min ago" in row) == 6
    assert out.splitlines()[-1].startswith("60 accounts; 0 with open incidents")
    assert out.splitlines()[-1].endswith("54 without an upload yet")


def test_an_empty_registry_says_how_to_add(stack: Stack) -> None:
    code, out, _ = stack.run("list")
    assert code == 0 and f"No accounts in {stack.table} yet. Add one with: linkup-sync accounts add" in out
    assert stack.run("list", "--json")[1] == ""


# --- remove -----------------------------------------------------------------------------------------


def test_remove_deletes_everything_of_that_account_and_nothing_of_another(stack: Stack) -> None:
    assert stack.add(flat())[0] == 0
    assert stack.add(flat(GREG, "greg-pass-0002"))[0] == 0
    fiona, greg = account_id_for(FIONA), account_id_for(GREG)
    stack.plant_run(FIONA, str(flat()["NIGHTSCOUT_URL"]), uploaded_ago_s=60)
    stack.plant_run(GREG, str(flat(GREG)["NIGHTSCOUT_URL"]), uploaded_ago_s=60, patient=PATIENT_2)
    before = stack.items()
    fionas = {
        item for item in before if item[0] in (account_key(FIONA), incidents_partition(fiona)) or item[1] == fiona
    }
    assert len(fionas) == 6  # registry, due; login, target; two incidents

    code, out, _ = stack.run("remove", fiona)
    assert code == 0
    assert out == (
        f"removed account {fiona} (f***@e***.invalid): 6 items deleted from {stack.table}: its registry entry "
        "with the encrypted credentials, its schedule entry, 2 state items (LibreLink Up login, breakers, "
        "record of uploads) and 2 incident items.\n"
    )
    assert stack.items() == before - fionas
    assert stack.registry.get(fiona) is None and stack.registry.get(greg) is not None
    code, _, err = stack.run("remove", fiona)
    assert code == 2 and "There is no account" in err
    code, out, _ = stack.run("list")
    assert [row.split()[0] for row in out.splitlines()[1:-1]] == [greg]
