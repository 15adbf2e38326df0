"""An account to add: the JSON the operator gives, checked with the personal stack's rules.

The JSON holds the keys of the personal secret (the flat form or TARGETS) plus the few settings an
account may have of its own. Every problem is reported at once, by key name, never by value.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..addresses import AddressRefused, SiteAddresses
from ..errors import ConfigError
from ..model import Credentials, Target
from ..runtime import nightscout_base_url
from ..secret_format import FLAT_SECRET_KEYS, credentials_from_secret, meant_keys, unknown_key_problems
from ..settings import Settings
from ..state.model import account_key
from .registry import ACCOUNT_SETTING_KEYS, Account, account_id_for, mask_email
from .schedule import DEFAULT_INTERVAL, check_interval
from .vault import Vault

INTERVAL_KEY = "SYNC_INTERVAL_MINUTES"
PLACE = "the account's JSON"
HEADING = "The account cannot be added"
# What an incident announced on the person's Nightscout tells them to do about credentials.
HOSTED_HINT = "tell whoever runs your LibreLink Up bridge the new value (they run: linkup-sync accounts add --replace)"
PUBLIC_SITES = SiteAddresses()  # the spelling of the address only: no lookup
SECRET_FORM_KEYS = (*FLAT_SECRET_KEYS, "TARGETS")
ACCOUNT_KEYS = (*SECRET_FORM_KEYS, *(k for k in ACCOUNT_SETTING_KEYS if k not in SECRET_FORM_KEYS), INTERVAL_KEY)


@dataclass(frozen=True)
class NewAccount:
    id: str
    state_key: str
    interval: int
    settings: dict[str, str]
    email_masked: str
    people: int
    plaintext: bytes = field(repr=False)


def _setting_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _unquoted(problem: str, given: list[str], secrets: list[str]) -> str:
    """The personal settings' messages quote a wrong value, and so does this one (issue 23: the operator
    needs to see what was wrong), except a password or token of the same JSON pasted into a settings key.
    Control characters of a shown value are replaced, so a value cannot rewrite the terminal."""
    hidden = {s for s in secrets if s} | {s.strip() for s in secrets if s.strip()}
    for value in given:
        for quoted_value in (value, value.strip()):
            quoted = f"'{quoted_value}'"
            if quoted not in problem:
                continue
            if quoted_value in hidden or any(s in quoted_value for s in hidden if len(s) >= 6):
                problem = problem.replace(quoted, "(the value given, hidden: it is a password or token)")
            else:
                shown = "".join(c if c.isprintable() else "?" for c in quoted_value)
                problem = problem.replace(quoted, f"'{shown}'")
    return problem


def _secret_values(raw: Mapping[str, object]) -> list[str]:
    """The passwords and tokens of an account's JSON (top level and TARGETS entries): never shown."""
    listed = raw.get("TARGETS")
    entries: list[Mapping[str, object]] = [raw]
    if isinstance(listed, list):
        entries += [e for e in listed if isinstance(e, Mapping)]
    found: list[str] = []
    for entry in entries:
        for key in ("LINK_UP_PASSWORD", "NIGHTSCOUT_API_TOKEN"):
            value = entry.get(key)
            if isinstance(value, str):
                found.append(value)
    return found


def check_account(raw: object, *, addresses: SiteAddresses = PUBLIC_SITES) -> NewAccount:
    """The account to store, or a ConfigError listing every problem of the JSON.

    `addresses`: the hosted rule for the Nightscout sites (public https sites only; with a resolver, their
    names are looked up too, as `accounts add` does).
    """
    obj = _account_object(raw)
    own = {key: obj[key] for key in ACCOUNT_SETTING_KEYS if key in obj}
    secret_part = {key: value for key, value in obj.items() if key not in own and key != INTERVAL_KEY}
    settings = {key: _setting_text(value) for key, value in own.items()}
    given = [*settings.values(), *([str(obj[INTERVAL_KEY])] if INTERVAL_KEY in obj else [])]
    secrets = _secret_values(obj)
    problems = [_unquoted(p, given, secrets) for p in _settings_problems(settings)]
    interval = _interval(obj, problems, lambda p: _unquoted(p, given, secrets))
    problems += _unknown_account_keys(secret_part)  # drops them from secret_part
    creds: Credentials | None = None
    try:
        creds = credentials_from_secret(secret_part, version="", secret_id=None, hint=" ", place=PLACE)
    except ConfigError as exc:
        problems += [p for p in exc.problems if p.strip()]
    problems += _site_problems(secret_part, addresses)  # also while other keys are wrong: all at once
    if problems or creds is None:
        raise ConfigError(problems, heading=HEADING)
    return NewAccount(
        id=account_id_for(creds.username),
        state_key=account_key(creds.username),
        interval=interval,
        settings=settings,
        email_masked=mask_email(creds.username),
        people=len(creds.targets),
        plaintext=json.dumps(secret_part, separators=(",", ":"), sort_keys=True).encode(),
    )


# --- the steps of check_account ------------------------------------------------------------------


def _account_object(raw: object) -> dict[str, Any]:
    """The account's JSON as one object, or a ConfigError saying what it must be."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(
                ["Standard input is not JSON: give one JSON object, e.g. < account.json."], heading=HEADING
            ) from None
    if not isinstance(raw, dict):
        raise ConfigError(["The account's JSON must be one object {...}."], heading=HEADING)
    return raw


def _settings_problems(settings: Mapping[str, str]) -> list[str]:
    """The account's own settings, checked with the personal stack's rules."""
    try:
        Settings.from_env(settings, need_aws=False)
    except ConfigError as exc:
        return exc.problems
    return []


def _interval(obj: Mapping[str, object], problems: list[str], unquoted: Callable[[str], str]) -> int:
    if INTERVAL_KEY not in obj:
        return DEFAULT_INTERVAL
    try:
        return check_interval(obj[INTERVAL_KEY])
    except ValueError as exc:
        problems.append(unquoted(str(exc)))
        return DEFAULT_INTERVAL


def _unknown_account_keys(secret_part: dict[str, Any]) -> list[str]:
    """The secret's own check knows only the secret's keys: a key that stands for one of the account's
    settings, or for no key at all, is reported here, against every key an account takes (and removed)."""
    problems: list[str] = []
    for key in [k for k in secret_part if k not in SECRET_FORM_KEYS]:
        if not meant_keys({key: None}, ACCOUNT_KEYS) & set(SECRET_FORM_KEYS):
            problems += unknown_key_problems({key: None}, ACCOUNT_KEYS, PLACE)
            del secret_part[key]
    return problems


def _site_problems(secret_part: dict[str, Any], addresses: SiteAddresses) -> list[str]:
    """Every Nightscout address against the hosted rule, each problem naming its TARGETS entry."""
    site_settings = Settings.from_env({}, need_aws=False)
    problems: list[str] = []
    for where, url in _nightscout_urls(secret_part):
        try:
            addresses.check_resolved(nightscout_base_url(Target(None, url, ""), site_settings, heading=HEADING))
        except ConfigError as exc:
            problems += [p + where for p in exc.problems]
        except AddressRefused as exc:
            problems.append(exc.message + where)
    return problems


def _nightscout_urls(secret_part: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, address) of every NIGHTSCOUT_URL that is text, in either form of the JSON."""
    listed = secret_part.get("TARGETS")
    if isinstance(listed, list):
        entries = [(f" (TARGETS entry {i})", e) for i, e in enumerate(listed, start=1) if isinstance(e, dict)]
    else:
        entries = [("", secret_part)]
    found = [(where, entry.get("NIGHTSCOUT_URL")) for where, entry in entries]
    return [(where, url.strip()) for where, url in found if isinstance(url, str) and url.strip()]


def seal_account(new: NewAccount, vault: Vault) -> Account:
    """Encrypt the credentials for this account only; the registry item to store."""
    ciphertext, key_arn = vault.seal(new.id, new.plaintext)
    return Account(
        id=new.id,
        state_key=new.state_key,
        interval=new.interval,
        ciphertext=ciphertext,
        key_id=key_arn,
        cred_version=uuid.uuid4().hex,
        email_masked=new.email_masked,
        people=new.people,
        settings=dict(new.settings),
    )


def account_credentials(account: Account, plaintext: bytes) -> Credentials:
    """The decrypted JSON as credentials (checked again: a stored item may predate a rule)."""
    data: Any = plaintext.decode("utf-8", errors="replace")
    return credentials_from_secret(
        data, version=account.cred_version, secret_id=None, hint="Fix: " + HOSTED_HINT, place=PLACE
    )
