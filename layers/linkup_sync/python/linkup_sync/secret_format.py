"""The credentials secret's JSON: its two forms, its keys, and their checks, validated once.

Two forms: the flat one of nightscout-librelink-up (one person, NIGHTSCOUT_URL and NIGHTSCOUT_API_TOKEN
at the top), or a TARGETS list, one entry per followed person. Every problem is listed at once in one
SecretError, and every message names keys, never values. The same key checks serve the hosted accounts
(hosted/accounts.py) and the command line's credentials from environment variables.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .config import FALSE_WORDS, TRUE_WORDS
from .errors import SecretError
from .model import Credentials, Target

SECRET_KEYS = ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")
# Every key the secret may hold: the flat form (one person) and the TARGETS form (one entry per person).
TARGET_ENTRY_KEYS = ("LINK_UP_CONNECTION", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN", "NIGHTSCOUT_API_V3")
FLAT_SECRET_KEYS = (*SECRET_KEYS, "LINK_UP_CONNECTION", "NIGHTSCOUT_API_V3")
LIST_SECRET_KEYS = ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "TARGETS")

UNUSABLE_HEADING = "The credentials secret cannot be used"
PATIENT_EXAMPLE = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
_PATIENT_RE = re.compile(r"^[0-9A-Fa-f-]{8,64}$")
# A follower login is an e-mail address: something@domain, no spaces. Checked before any login, because a
# login with a value that cannot be an address only costs a try and trips the bad-password breaker.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def is_patient_id(text: str) -> bool:
    """The one check of a LINK_UP_CONNECTION: a LibreLink Up patientId (a UUID), in either case."""
    return _PATIENT_RE.match(text) is not None


def _suggestion(key: object, known: list[str]) -> str | None:
    """The known key an unknown one most likely means (a case variant or a typing error), or None."""
    upper = str(key).strip().upper()
    if upper in known:
        return upper
    close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_problems(obj: Mapping[str, object], allowed: Iterable[str], place: str) -> list[str]:
    """One problem per key of `obj` that is not in `allowed`, with a "did you mean" where one is close.

    A typing error must not be ignored: a secret with LINK_UP_CONNECTON would follow the first person the
    account follows, so with two children one child's readings could land in the other's Nightscout.
    Key names only, never values. Reusable for every place that takes these keys (secret, TARGETS
    entries, the hosted accounts).
    """
    known = list(allowed)
    problems: list[str] = []
    for key in obj:
        if key in known:
            continue
        text = str(key)
        meant = _suggestion(key, known)
        if meant is not None and meant == text.strip().upper():
            problems.append(f"'{text}' in {place} must be written exactly {meant} (in capitals).")
        elif meant is not None:
            problems.append(f"'{text}' in {place} is not a key linkup-sync knows. Did you mean {meant}?")
        else:
            problems.append(f"'{text}' in {place} is not a key linkup-sync knows. Allowed: {', '.join(known)}.")
    return problems


def meant_keys(obj: Mapping[str, object], allowed: Iterable[str]) -> set[str]:
    """The known keys that obj's unknown keys most likely stand for (to not also call them missing)."""
    known = list(allowed)
    return {m for key in obj if key not in known and (m := _suggestion(key, known)) is not None}


def set_secret_hint(secret_id: str | None, *, targets: bool = False) -> str:
    """How to store the secret. Never a command with the values in it: a password on a command line ends
    up in the shell history and in `ps`.

    targets: the secret has the TARGETS form (several people). `make secret` writes only the flat form
    and would drop the other people, so it is not suggested then.
    """
    sid = secret_id or "<CredentialsSecretArn>"
    by_file = (
        "write the JSON to a file secret.json and run: aws secretsmanager put-secret-value "
        f"--secret-id {sid} --secret-string file://secret.json (then delete the file)"
    )
    if targets:
        return (
            "`make setup` in the linkup-sync checkout (it asks for each person and keeps them all; it shows no "
            f"password or token), or {by_file}"
        )
    return (
        "`make secret` in the linkup-sync checkout (it reads the values from environment variables and shows "
        f"none of them), or {by_file}"
    )


def _text(obj: Mapping[str, object], key: str, place: str, problems: list[str], reported: Iterable[str] = ()) -> str:
    value = obj.get(key)
    if value is None:
        if key not in reported:  # a misspelt or lower-case variant was already reported as such
            problems.append(f"{key} is missing from {place}.")
    elif not isinstance(value, str) or not value.strip():
        problems.append(f"{key} in {place} is empty or not a string.")
    else:
        return value if key == "LINK_UP_PASSWORD" else value.strip()
    return ""


def _optional_bool(obj: Mapping[str, object], key: str, place: str, problems: list[str]) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | (FALSE_WORDS - {""}):
        return value.strip().lower() in TRUE_WORDS
    problems.append(f"{key} in {place} must be true or false.")
    return None


def _check_patient(patient: str | None, where: str, problems: list[str]) -> None:
    """LINK_UP_CONNECTION in the secret or in a TARGETS entry: empty, or a patientId."""
    if patient and not is_patient_id(patient):
        problems.append(f"LINK_UP_CONNECTION in {where} must be a patientId such as {PATIENT_EXAMPLE}.")


# --- the steps of credentials_from_secret ------------------------------------------------------------


def _secret_object(raw: object, hint: str) -> dict[str, Any]:
    """The secret as a JSON object, or a SecretError saying what it must be."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SecretError(
                [
                    "The secret is not JSON. It must be a JSON object with the keys " + ", ".join(SECRET_KEYS) + ".",
                    hint,
                ],
                heading=UNUSABLE_HEADING,
            ) from None
    if not isinstance(raw, dict):
        raise SecretError(
            ["The secret must be a JSON object with the keys " + ", ".join(SECRET_KEYS) + ".", hint],
            heading=UNUSABLE_HEADING,
        )
    return raw


def _top_level_problems(obj: Mapping[str, object], allowed: tuple[str, ...], place: str) -> list[str]:
    """Unknown keys at the top, and, with TARGETS, the entries' keys that were put at the top."""
    listed = obj.get("TARGETS") is not None
    problems = unknown_key_problems(obj, allowed if listed else (*allowed, "TARGETS"), place)
    moved = [key for key in TARGET_ENTRY_KEYS if key in obj] if listed else []
    if moved:
        problems.append(
            "With TARGETS, " + ", ".join(moved) + " belong(s) in each TARGETS entry, not at the top of "
            f"{place}: move them into the entries."
        )
    return problems


def _login(obj: Mapping[str, object], place: str, problems: list[str], reported: set[str]) -> tuple[str, str]:
    """LINK_UP_USERNAME (an e-mail address) and LINK_UP_PASSWORD; empty where a problem was recorded."""
    username = _text(obj, "LINK_UP_USERNAME", place, problems, reported)
    if username and not _EMAIL_RE.match(username):
        problems.append(
            f"LINK_UP_USERNAME in {place} is not an e-mail address (it has a space, or no @ or domain): it "
            "must be the e-mail address the LibreLink Up app logs in with. No login was tried."
        )
        username = ""
    return username, _text(obj, "LINK_UP_PASSWORD", place, problems, reported)


def _flat_target(obj: Mapping[str, object], place: str, problems: list[str], reported: set[str]) -> Target:
    """The one person of the flat form."""
    url = _text(obj, "NIGHTSCOUT_URL", place, problems, reported)
    token = _text(obj, "NIGHTSCOUT_API_TOKEN", place, problems, reported)
    api_v3 = _optional_bool(obj, "NIGHTSCOUT_API_V3", place, problems)
    connection = obj.get("LINK_UP_CONNECTION")
    patient = connection.strip().lower() if isinstance(connection, str) and connection.strip() else None
    _check_patient(patient, place, problems)
    return Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3)


def _entry_target(entry: Mapping[str, object], number: int, problems: list[str]) -> Target:
    """TARGETS entry `number` (counted from 1)."""
    where = f"TARGETS entry {number}"
    problems += unknown_key_problems(entry, TARGET_ENTRY_KEYS, where)
    reported = meant_keys(entry, TARGET_ENTRY_KEYS)
    patient = _text(entry, "LINK_UP_CONNECTION", where, problems, reported).lower()
    _check_patient(patient, where, problems)
    url = _text(entry, "NIGHTSCOUT_URL", where, problems, reported)
    token = _text(entry, "NIGHTSCOUT_API_TOKEN", where, problems, reported)
    api_v3 = _optional_bool(entry, "NIGHTSCOUT_API_V3", where, problems)
    return Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3, entry=number)


def _listed_targets(listed: object, place: str, problems: list[str]) -> list[Target]:
    """The people of the TARGETS form, each entry checked, no patient and site twice."""
    if not isinstance(listed, list) or not listed:
        problems.append(f"TARGETS in {place} must be a non-empty list of objects.")
        return []
    targets: list[Target] = []
    seen: set[tuple[str | None, str]] = set()
    for number, entry in enumerate(listed, start=1):
        if not isinstance(entry, dict):
            problems.append(f"TARGETS entry {number} must be an object.")
            continue
        target = _entry_target(entry, number, problems)
        if (target.patient_id, target.nightscout_url) in seen:
            problems.append(f"TARGETS entry {number} repeats the same patient and Nightscout site.")
        seen.add((target.patient_id, target.nightscout_url))
        targets.append(target)
    return targets


def _secret_error(problems: list[str], place: str, hint: str) -> SecretError:
    # "incomplete" only when something is missing; an unknown key or a wrong value is not that.
    only_missing = all(
        p.endswith(f" is missing from {place}.") or " is missing from TARGETS entry" in p for p in problems
    )
    heading = f"The credentials in {place} are " + ("incomplete" if only_missing else "not usable as they are")
    return SecretError([*problems, hint], heading=heading)


def credentials_from_secret(
    raw: object, *, version: str, secret_id: str | None, hint: str | None = None, place: str = "the secret"
) -> Credentials:
    """Validate the secret's JSON (either form, see the module's text). Messages name keys, never values."""
    obj = _secret_object(raw, hint or "Set it with: " + set_secret_hint(secret_id))
    # A misspelt TARGETS (TARGET, targets) means the list form: say so instead of "NIGHTSCOUT_URL is missing".
    listed = obj.get("TARGETS")
    list_form = listed is not None or "TARGETS" in meant_keys(obj, (*FLAT_SECRET_KEYS, "TARGETS"))
    hint = hint or "Set it with: " + set_secret_hint(secret_id, targets=list_form)
    allowed = LIST_SECRET_KEYS if list_form else FLAT_SECRET_KEYS
    problems = _top_level_problems(obj, allowed, place)
    reported = meant_keys(obj, allowed)  # reported above with "did you mean": not also "missing"
    username, password = _login(obj, place, problems, reported)
    targets: list[Target] = []
    if listed is not None:
        targets = _listed_targets(listed, place, problems)
    elif not list_form:
        targets = [_flat_target(obj, place, problems, reported)]
    # else: the misspelt TARGETS key is reported above; its entries cannot be read
    if problems:
        raise _secret_error(problems, place, hint)
    return Credentials(username=username, password=password, targets=tuple(targets), version=version)
