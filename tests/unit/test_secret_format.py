"""The credentials secret's format (secret_format.py): its keys, its two forms, messages without values.

Moved from test_settings.py with the code (issue 25); more of the secret's cases are in test_first_hour.py.
"""

from __future__ import annotations

import json

import pytest

from linkup_sync.errors import SecretError
from linkup_sync.secret_format import credentials_from_secret, set_secret_hint


def test_secret_missing_keys_are_named_without_values() -> None:
    with pytest.raises(SecretError) as err:
        credentials_from_secret(
            json.dumps({"LINK_UP_USERNAME": "a@b.c", "LINK_UP_PASSWORD": "hunter2hunter2", "NIGHTSCOUT_URL": ""}),
            version="v1",
            secret_id="arn:s",
        )
    text = str(err.value)
    assert "NIGHTSCOUT_URL in the secret is empty" in text
    assert "NIGHTSCOUT_API_TOKEN is missing" in text
    assert "aws secretsmanager put-secret-value --secret-id arn:s" in text
    assert "hunter2hunter2" not in text and "a@b.c" not in text


def test_secret_that_is_not_json() -> None:
    with pytest.raises(SecretError, match="not JSON"):
        credentials_from_secret("user:pass", version="v", secret_id=None)


def test_credentials_repr_hides_password_and_token() -> None:
    creds = credentials_from_secret(
        {
            "LINK_UP_USERNAME": "a@b.c",
            "LINK_UP_PASSWORD": "pw-secret-1",
            "NIGHTSCOUT_URL": "https://ns",
            "NIGHTSCOUT_API_TOKEN": "tok-secret-2",
        },
        version="v",
        secret_id=None,
    )
    assert "pw-secret-1" not in repr(creds) and "tok-secret-2" not in repr(creds)


def test_the_hint_for_a_secret_of_several_people_is_not_make_secret() -> None:
    """Issue 23, finding 5: `make secret` writes one person; a TARGETS secret is changed with make setup."""
    assert "make secret" in set_secret_hint("s")
    several = set_secret_hint("s", targets=True)
    assert "make secret" not in several and "make setup" in several and "file://secret.json" in several


def test_every_problem_of_a_targets_secret_is_listed_at_once_in_the_order_of_the_secret() -> None:
    """The steps of credentials_from_secret (top-level keys, login, each entry, repeats) add to one list."""
    patient = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
    site = {"NIGHTSCOUT_URL": "https://a.example", "NIGHTSCOUT_API_TOKEN": "tok-1234567890"}
    raw = {
        "LINK_UP_USERNAME": "a@b.co",
        "LINK_UP_PASSWORD": "pw",
        "NIGHTSCOUT_URL": "https://a.example",
        "TARGETS": [
            1,
            {**site, "LINK_UP_CONNECTION": patient},
            {**site, "LINK_UP_CONNECTION": patient.upper()},  # the same person, written in capitals
            {"nightscout_url": "x", "LINK_UP_CONECTION": "zz", "NIGHTSCOUT_API_V3": "maybe"},
        ],
    }
    with pytest.raises(SecretError) as err:
        credentials_from_secret(raw, version="v", secret_id="arn:s")
    assert err.value.problems[:-1] == [
        "'NIGHTSCOUT_URL' in the secret is not a key linkup-sync knows. Allowed: LINK_UP_USERNAME, "
        "LINK_UP_PASSWORD, TARGETS.",
        "With TARGETS, NIGHTSCOUT_URL belong(s) in each TARGETS entry, not at the top of the secret: move them "
        "into the entries.",
        "TARGETS entry 1 must be an object.",
        "TARGETS entry 3 repeats the same patient and Nightscout site.",
        "'nightscout_url' in TARGETS entry 4 must be written exactly NIGHTSCOUT_URL (in capitals).",
        "'LINK_UP_CONECTION' in TARGETS entry 4 is not a key linkup-sync knows. Did you mean LINK_UP_CONNECTION?",
        "NIGHTSCOUT_API_TOKEN is missing from TARGETS entry 4.",
        "NIGHTSCOUT_API_V3 in TARGETS entry 4 must be true or false.",
    ]
    assert "make setup" in err.value.problems[-1] and "make secret" not in err.value.problems[-1]
    assert err.value.message.startswith("The credentials in the secret are not usable as they are:")


def test_a_targets_key_set_to_null_is_the_flat_form() -> None:
    """Only a TARGETS with a value (or a misspelt TARGETS) means the list form."""
    flat = {
        "LINK_UP_USERNAME": "a@b.co",
        "LINK_UP_PASSWORD": "pw",
        "NIGHTSCOUT_URL": "https://a.example",
        "NIGHTSCOUT_API_TOKEN": "tok-1234567890",
        "TARGETS": None,
    }
    (target,) = credentials_from_secret(flat, version="v", secret_id=None).targets
    assert (target.nightscout_url, target.entry) == ("https://a.example", None)
    with pytest.raises(SecretError, match="TARGETS in the secret must be a non-empty list"):
        credentials_from_secret({**flat, "TARGETS": []}, version="v", secret_id=None)
