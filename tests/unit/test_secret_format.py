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
