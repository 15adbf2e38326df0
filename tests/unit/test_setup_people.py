"""Changing the people followed on a deployed stack rewrites the secret: what each kept person had in it
beyond address and token (their own NIGHTSCOUT_API_V3) is kept, or a site that needs API v3 falls back to
API v1 without anyone asking for it."""

from __future__ import annotations

from typing import Any

from linkup_sync_cli.setup_session import people_of, secret_value

A, B = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13", "0d3c6b7a-5e4f-4a1b-8c9d-7e6f5a4b3c2d"
USER, PASSWORD = "fiona.follower@example.invalid", "correct horse battery staple"


def test_a_kept_persons_api_v3_survives_the_rewrite() -> None:
    current: dict[str, Any] = {
        "LINK_UP_USERNAME": USER,
        "LINK_UP_PASSWORD": PASSWORD,
        "TARGETS": [
            {"LINK_UP_CONNECTION": A, "NIGHTSCOUT_URL": "https://a.example.org",
             "NIGHTSCOUT_API_TOKEN": "bridge-0123456789abcdef", "NIGHTSCOUT_API_V3": "true"},
            {"LINK_UP_CONNECTION": B, "NIGHTSCOUT_URL": "https://b.example.org",
             "NIGHTSCOUT_API_TOKEN": "other-0123456789abcdef"},
        ],
    }  # fmt: skip
    rewritten = secret_value(USER, "a new password", people_of(current))
    entries = {t["LINK_UP_CONNECTION"]: t for t in rewritten["TARGETS"]}
    assert entries[A]["NIGHTSCOUT_API_V3"] == "true" and "NIGHTSCOUT_API_V3" not in entries[B]
    (only_a,) = [p for p in people_of(current) if p.patient_id == A]
    flat = secret_value(USER, PASSWORD, [only_a])  # one person left: the flat form keeps it too
    assert flat["NIGHTSCOUT_API_V3"] == "true" and flat["LINK_UP_CONNECTION"] == A


def test_with_yes_a_missing_targets_entry_says_how_to_add_it() -> None:
    """Not "set the environment variable TARGETS (the entry for AO)", which names no variable there is."""
    import io

    import pytest

    from linkup_sync_cli.setup_prompts import Asker, SetupAborted

    asker = Asker({}, io.StringIO(), yes=True, ask=input, ask_secret=input)
    with pytest.raises(SetupAborted) as stop:
        asker.answer("TARGETS (the entry for AO)", "Nightscout address for AO")
    assert "add an entry for this person to the environment variable TARGETS" in stop.value.message
    assert (
        "LINK_UP_CONNECTION" in stop.value.message
        and "set the environment variable TARGETS (" not in stop.value.message
    )
