"""An account to add (linkup_sync.hosted.accounts.check_account): the personal secret's rules, every
problem at once, by key name and never by value; sealing it for that account only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from linkup_sync.addresses import SiteAddresses
from linkup_sync.errors import ConfigError
from linkup_sync.hosted.accounts import HOSTED_HINT, account_credentials, check_account, seal_account
from linkup_sync.hosted.registry import account_id_for, mask_email
from linkup_sync.hosted.vault import Vault
from linkup_sync.state.model import account_key
from tests.support.moto_hosted import REGION, aws_env, kms_key

EMAIL = "Fiona.Follower@example.invalid"
PASSWORD = "correct horse battery staple"
TOKEN = "uploader-0123456789abcdef"
SITE = "https://fiona-cgm.example.org"
PATIENTS = ("8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13", "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")


def flat(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "LINK_UP_USERNAME": EMAIL,
        "LINK_UP_PASSWORD": PASSWORD,
        "NIGHTSCOUT_URL": SITE,
        "NIGHTSCOUT_API_TOKEN": TOKEN,
    }
    raw.update(changes)
    return {key: value for key, value in raw.items() if value is not None}


def listed(*entries: dict[str, Any], **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD, "TARGETS": list(entries)}
    raw.update(changes)
    return raw


def entry(patient: str, url: str = SITE, token: str = TOKEN) -> dict[str, Any]:
    return {"LINK_UP_CONNECTION": patient, "NIGHTSCOUT_URL": url, "NIGHTSCOUT_API_TOKEN": token}


def problems_of(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check_account(raw)
    assert caught.value.message.startswith("The account cannot be added")
    return caught.value.problems


def test_the_flat_form() -> None:
    new = check_account(flat(LINK_UP_REGION="eu2", SYNC_INTERVAL_MINUTES=10, NIGHTSCOUT_API_V3=True))
    assert new.id == account_id_for(EMAIL) and new.state_key == account_key(EMAIL)
    assert new.interval == 10 and new.people == 1 and new.email_masked == mask_email(EMAIL)
    assert new.settings == {"LINK_UP_REGION": "eu2", "NIGHTSCOUT_API_V3": "true"}
    stored = json.loads(new.plaintext)
    # the credentials only: the interval and the settings live in the registry item, readable
    assert stored == flat()
    assert PASSWORD not in repr(new)


def test_the_targets_form_and_the_default_interval() -> None:
    new = check_account(listed(entry(PATIENTS[0]), entry(PATIENTS[1], "https://other.example.org")))
    assert new.interval == 5 and new.people == 2 and new.settings == {}
    assert json.loads(new.plaintext)["TARGETS"][1]["NIGHTSCOUT_URL"] == "https://other.example.org"


def test_json_text_is_read_and_other_input_is_refused() -> None:
    assert check_account(json.dumps(flat())).id == account_id_for(EMAIL)
    assert check_account(json.dumps(flat()).encode()).id == account_id_for(EMAIL)
    assert problems_of("LINK_UP_USERNAME=fiona") == [
        "Standard input is not JSON: give one JSON object, e.g. < account.json."
    ]
    assert problems_of([flat()]) == ["The account's JSON must be one object {...}."]


def test_every_problem_at_once_and_no_value_in_any() -> None:
    raw = flat(
        LINK_UP_PASSWORD=None,
        NIGHTSCOUT_URL="http://fiona-cgm.example.org",
        NIGHTSCOUT_API_TOKEN="",
        LINK_UP_REGION="Atlantis",
        LINK_UP_VERSION="latest",
        SYNC_INTERVAL_MINUTES=7,
        NIGHTSCOUT_TOKN=TOKEN,
    )
    problems = problems_of(raw)
    text = "\n".join(problems)
    expected = {
        "did you mean": "'NIGHTSCOUT_TOKN' in the account's JSON is not a key linkup-sync knows. Did you mean "
        "NIGHTSCOUT_API_TOKEN?",
        "region": "LINK_UP_REGION",
        "version": "LINK_UP_VERSION must be",
        "interval": "SYNC_INTERVAL_MINUTES must be one of",
        "password": "LINK_UP_PASSWORD is missing from the account's JSON.",
        "token": "NIGHTSCOUT_API_TOKEN in the account's JSON is empty",
        "http": "NIGHTSCOUT_URL starts with http://",
    }
    for what, start in expected.items():
        assert any(p.startswith(start) for p in problems), f"{what} not reported:\n{text}"
    for value in (TOKEN, PASSWORD, EMAIL, EMAIL.lower(), "fiona-cgm", "example.org"):
        assert value not in text


UNKNOWN = "'{}' in the account's JSON is not a key linkup-sync knows. Did you mean {}?"
CAPITALS = "'{}' in the account's JSON must be written exactly {} (in capitals)."


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("LINK_UP_REGON", UNKNOWN.format("LINK_UP_REGON", "LINK_UP_REGION")),
        ("LINK_UP_VERISON", UNKNOWN.format("LINK_UP_VERISON", "LINK_UP_VERSION")),
        ("link_up_region", CAPITALS.format("link_up_region", "LINK_UP_REGION")),
        ("SYNC_INTERVAL", UNKNOWN.format("SYNC_INTERVAL", "SYNC_INTERVAL_MINUTES")),
        ("sync_interval_minutes", CAPITALS.format("sync_interval_minutes", "SYNC_INTERVAL_MINUTES")),
    ],
)
def test_a_misspelt_account_setting_is_named_as_one(key: str, problem: str) -> None:
    """The secret's rules know only the secret's keys: their "did you mean" must include the account's own."""
    assert problems_of(flat(**{key: "10"})) == [problem]
    assert problems_of(listed(entry(PATIENTS[0]), **{key: "10"})) == [problem]


def test_a_misspelt_secret_key_is_still_the_secrets_rules() -> None:
    raw = {"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD, "targets": [entry(PATIENTS[0])]}
    assert problems_of(raw) == ["'targets' in the account's JSON must be written exactly TARGETS (in capitals)."]
    assert problems_of(flat(LINK_UP_PASSWORD=None, link_up_password=PASSWORD)) == [
        "'link_up_password' in the account's JSON must be written exactly LINK_UP_PASSWORD (in capitals)."
    ]


def test_an_http_site_in_a_targets_entry_is_named_by_its_entry() -> None:
    problems = problems_of(listed(entry(PATIENTS[0]), entry(PATIENTS[1], "http://other.example.org")))
    assert len(problems) == 1 and problems[0].endswith("(TARGETS entry 2)")
    assert "other.example.org" not in problems[0]


def test_an_http_site_is_reported_next_to_a_missing_password_in_targets() -> None:
    raw = listed(entry(PATIENTS[0], "http://fiona-cgm.example.org"), LINK_UP_PASSWORD="")
    problems = problems_of(raw)
    assert any(p.startswith("LINK_UP_PASSWORD in the account's JSON is empty") for p in problems)
    assert any(p.startswith("NIGHTSCOUT_URL starts with http://") and "(TARGETS entry 1)" in p for p in problems)


def test_http_to_loopback_is_allowed_only_for_local_tests() -> None:
    """The simulators of the tests run on 127.0.0.1; plain http to them sends nothing over a network. Issue 21:
    a hosted account may use such a site only with LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT=true (the tests')."""
    raw = flat(NIGHTSCOUT_URL="http://127.0.0.1:8080")
    assert check_account(raw, addresses=SiteAddresses(allow_loopback=True)).people == 1
    (problem,) = problems_of(raw)
    assert problem.startswith("NIGHTSCOUT_URL is a loopback address (this machine itself)")


def test_the_stack_settings_are_not_the_accounts() -> None:
    problems = problems_of(flat(STATE_TABLE_NAME="elsewhere", LINK_UP_API_URL="https://evil.example/{region}"))
    assert any("'STATE_TABLE_NAME'" in p for p in problems) and any("'LINK_UP_API_URL'" in p for p in problems)


def test_no_problem_echoes_a_secret_wherever_it_is_misplaced() -> None:
    """A password pasted into another key is still not shown."""
    for key in ("LINK_UP_PASSWORT", "link_up_password", "PASSWORD", "TARGETS"):
        problems = problems_of(flat(**{key: PASSWORD}))
        assert PASSWORD not in "\n".join(problems), key


@pytest.mark.parametrize(
    "variant", [EMAIL, EMAIL.lower(), EMAIL.upper(), f"  {EMAIL}\t", " fiona.follower@EXAMPLE.INVALID"]
)
def test_the_id_is_the_same_for_case_and_whitespace_variants(variant: str) -> None:
    new = check_account(flat(LINK_UP_USERNAME=variant))
    assert new.id == account_id_for(EMAIL) and new.state_key == account_key(EMAIL)
    assert new.email_masked.lower() == "f***@e***.invalid"


def test_another_address_is_another_account() -> None:
    assert check_account(flat(LINK_UP_USERNAME="fiona.follower2@example.invalid")).id != account_id_for(EMAIL)


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    aws_env(monkeypatch)
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        yield Vault(kms_key(kms), client=kms)


def test_seal_then_read_back_as_credentials(vault: Vault) -> None:
    new = check_account(listed(entry(PATIENTS[0]), entry(PATIENTS[1]), LINK_UP_VERSION="4.17.0"))
    account = seal_account(new, vault)
    assert account.id == new.id and account.key_id == vault.key_id and account.interval == 5
    assert account.settings == {"LINK_UP_VERSION": "4.17.0"} and account.people == 2
    assert PASSWORD.encode() not in account.ciphertext and PASSWORD not in repr(account)
    creds = account_credentials(account, vault.open(account.id, account.ciphertext))
    assert creds.username == EMAIL and creds.password == PASSWORD and creds.version == account.cred_version
    assert [t.patient_id for t in creds.targets] == list(PATIENTS)
    again = seal_account(new, vault)
    assert again.cred_version != account.cred_version  # a new add ends a bad-password breaker


def test_stored_credentials_are_checked_again_with_the_hosted_hint() -> None:
    new = check_account(flat())
    account = seal_account(new, _PlainVault())
    with pytest.raises(ConfigError) as caught:
        account_credentials(account, b'{"LINK_UP_USERNAME": "fiona@example.invalid"}')
    assert HOSTED_HINT in caught.value.message and "LINK_UP_PASSWORD is missing" in caught.value.message


class _PlainVault(Vault):
    """A vault that does not encrypt (for what only needs an Account)."""

    def __init__(self) -> None:
        super().__init__("arn:aws:kms:us-east-1:123456789012:key/plain", client=object())

    def seal(self, account_id: str, plaintext: bytes) -> tuple[bytes, str]:
        return plaintext, str(self.key_id)


def test_no_password_or_token_is_echoed_in_a_setting_but_other_wrong_values_are() -> None:
    """Issue 23, finding 8 (this test replaces "no wrong setting value is echoed"): the operator sees a
    wrong setting's value; only a password or token of the same JSON pasted into a setting stays hidden."""
    pasted = "pasted-secret-42"
    with pytest.raises(ConfigError) as caught:
        check_account(
            {
                "LINK_UP_PASSWORD": pasted,
                "NIGHTSCOUT_API_TOKEN": "token-" + pasted,
                "LINK_UP_REGION": pasted,
                "LINK_UP_VERSION": "token-" + pasted,
                "NIGHTSCOUT_API_V3": "maybe",
                "SYNC_INTERVAL_MINUTES": "7\x1b[2J",
            }
        )
    text = caught.value.message
    assert pasted not in text
    assert "LINK_UP_REGION (the value given, hidden: it is a password or token)" in text
    assert "LINK_UP_VERSION must be" in text and text.count("hidden: it is a password or token") == 2
    assert "NIGHTSCOUT_API_V3 must be true or false, not 'maybe'" in text
    assert "not '7?[2J'" in text and "\x1b" not in text  # shown, without the terminal escape
